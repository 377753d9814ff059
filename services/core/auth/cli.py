"""Print a development token: `python -m services.core.auth.cli [--user-id U ...]`.

The token is the last line printed, so `TOKEN=$(make token | tail -n1)` works.
"""

from __future__ import annotations

import click

from services.core.auth.tokens import issue_token
from services.core.config import get_settings


@click.command()
@click.option("--user-id", default="dev-admin", show_default=True)
@click.option("--customer-id", default="dev", show_default=True)
@click.option("--role", default="admin", show_default=True, help="user, admin or service")
@click.option("--ttl-s", default=12 * 3600, show_default=True, type=int)
def main(user_id: str, customer_id: str, role: str, ttl_s: int) -> None:
    """Print a token signed with the AUTH_JWT_SECRET of these settings."""
    click.echo(f"# {role} token for user {user_id!r} of customer {customer_id!r}", err=True)
    roles = [r for r in role.split(",") if r]
    click.echo(
        issue_token(
            get_settings(), user_id=user_id, customer_id=customer_id, roles=roles, ttl_s=ttl_s
        )
    )


if __name__ == "__main__":
    main()
