from typing import Annotated

from fastapi import Depends

from app.dependencies import LabelerUser, SessionDep
from app.ids import Id
from app.labeling import answers
from app.labeling.models import Assignment


def valid_assignment_id(labeler: LabelerUser, assignment_id: Id, session: SessionDep) -> Assignment:
    """Load the assignment in the path; 404 if unknown, 403 if it is another labeler's."""
    return answers.get_assignment_for(session, assignment_id=assignment_id, labeler=labeler)


OwnAssignment = Annotated[Assignment, Depends(valid_assignment_id)]
