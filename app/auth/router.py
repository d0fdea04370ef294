"""JSON API: users, tokens, /me."""

from fastapi import APIRouter, Response, status

from app.auth import lifecycle, service
from app.auth.schemas import TokenInfo, TokenOut, UserCreate, UserDetail, UserOut, UserUpdate
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


@router.patch("/users/{user_id}", response_model=UserDetail)
def update_user(admin: AdminUser, user_id: Id, body: UserUpdate, session: SessionDep):
    """Change the role, disable or enable, reset the password (docs/users.md)."""
    user = service.get_user(session, user_id)
    return lifecycle.update_user(session, user=user, acting=admin, **body.model_dump(exclude_unset=True))


@router.get("/users/{user_id}/tokens", response_model=Page[TokenInfo])
def list_tokens(_admin: AdminUser, user_id: Id, session: SessionDep):
    user = service.get_user(session, user_id)
    return Page(items=lifecycle.list_tokens(session, user=user), next_cursor=None)


@router.delete("/users/{user_id}/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(_admin: AdminUser, user_id: Id, token_id: Id, session: SessionDep):
    lifecycle.revoke_token(session, user=service.get_user(session, user_id), token_id=token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser):
    return user
