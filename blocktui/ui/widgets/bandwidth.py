"""An input for a bandwidth limit that explains, as you type, why what you typed cannot be used."""

from __future__ import annotations

from textual.validation import ValidationResult, Validator
from textual.widgets import Input

from blocktui.core.errors import InvalidInput
from blocktui.core.text import visible
from blocktui.core.units import parse_bandwidth


class BandwidthValidator(Validator):
    """Accepts exactly what ``parse_bandwidth`` accepts; an empty field means unlimited."""

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.success()
        try:
            parse_bandwidth(value)
        except InvalidInput as exc:
            # The message quotes what was typed: escape it, since a paste can hold control characters.
            return self.failure(visible(str(exc)))
        return self.success()


def bandwidth_of(value: str) -> int:
    """The limit in bytes/s for what the field holds (empty: 0, unlimited).

    Raises:
        InvalidInput: the text is not a bandwidth.
    """
    return parse_bandwidth(value) if value.strip() else 0


class BandwidthInput(Input):
    """A text field for a limit such as ``50M`` or ``unlimited``, validated on every change."""

    def __init__(self, value: str = "", *, id: str | None = None) -> None:
        super().__init__(
            value=value,
            placeholder="unlimited (or 50M, 512k, 1.5G)",
            validators=[BandwidthValidator()],
            validate_on=["changed", "submitted"],
            id=id,
        )
