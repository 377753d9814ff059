"""The caller and its rights over customers and tasks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Roles a token may carry."""

    USER = "user"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    customer_id: str | None
    roles: frozenset[Role]

    @property
    def is_service(self) -> bool:
        """Services act for any customer named in the request."""
        return Role.SERVICE in self.roles

    @property
    def is_admin(self) -> bool:
        """Admins see every task of their own customer."""
        return Role.ADMIN in self.roles

    def may_act_for(self, customer_id: str | None) -> bool:
        """Whether the caller may write or read data of `customer_id`."""
        if self.is_service:
            return True
        return customer_id is not None and customer_id == self.customer_id

    def may_see_task(self, user_id: str | None, customer_id: str | None) -> bool:
        """Whether the caller may see a task of that user and customer."""
        if self.is_service:
            return True
        if customer_id is None or customer_id != self.customer_id:
            return False
        return self.is_admin or user_id == self.user_id
