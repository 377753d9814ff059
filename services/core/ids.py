"""Identifier syntax every write shares, whatever its downstream."""

from __future__ import annotations

# A tenant: 1-128 letters, digits, '.', '_' or '-', not starting with a punctuation mark.
# FAQ ids follow the same rule.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# A FAQ id is chosen by the customer under the same rule.
FAQ_ID_PATTERN = CUSTOMER_ID_PATTERN
