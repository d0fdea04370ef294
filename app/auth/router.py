"""JSON API: users, tokens, /me."""

from fastapi import APIRouter, status

from app.auth import service
from app.auth.schemas import TokenOut, UserCreate, UserDetail, UserOut
from app.dependencies import AdminUser, CurrentUser, SessionDep
from app.ids import Id
from app.pagination import Page

router = APIRouter(tags=["users"])


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def create_user(_admin: AdminUser, body: UserCreate, session: SessionDep):
    return service.create_user(session, username=body.username, role=body.role, password=body.password)


@router.get("/users", response_model=Page[UserDetail])
def list_users(_admin: AdminUser, session: SessionDep):
    return Page(items=service.list_users(session), next_cursor=None)


@router.post("/users/{user_id}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenOut)
def create_token(_admin: AdminUser, user_id: Id, session: SessionDep):
    user = service.get_user(session, user_id)
    return TokenOut(token=service.issue_api_token(session, user=user))


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser):
    return user
