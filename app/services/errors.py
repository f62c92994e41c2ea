"""Errors a service raises. Each carries CloudStack's API error code so the API
layer and the web layer can present the same failure in their own way."""
from __future__ import annotations


class ServiceError(Exception):
    code = 530  # internal
    cs_code = 4250
    # A 530 whose text is CloudStack's answer to a user too (a refusal, not an internal fault).
    shown_to_users = False

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field  # the form field / API parameter at fault, if any


class InvalidParameter(ServiceError):
    code, cs_code = 431, 4350


class InvalidParameters(InvalidParameter):
    """Several wrong values found at once (a form step shows each beside its field):
    `errors` holds them; the message joins them, the field is the first one's."""

    def __init__(self, errors: list[InvalidParameter]):
        super().__init__("; ".join(e.message for e in errors), field=errors[0].field)
        self.errors = list(errors)


class Collect:
    """Run independent checks and keep every InvalidParameter they raise:
    `value = c(check, *args)` (None when it failed), then `c.done()` raises them all."""

    def __init__(self):
        self.errors: list[InvalidParameter] = []

    def __call__(self, check, *args, **kwargs):
        try:
            return check(*args, **kwargs)
        except InvalidParameter as e:
            self.errors.extend(getattr(e, "errors", None) or [e])
            return None

    def done(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise InvalidParameters(self.errors)


class NotFound(InvalidParameter):
    """An object that does not exist, or that the caller may not see (same answer)."""


class Unsupported(ServiceError):
    code, cs_code = 432, 9999


class PermissionDenied(ServiceError):
    code, cs_code = 531, 4365


class ResourceLimitExceeded(ServiceError):
    code, cs_code = 532, 4280


class InsufficientCapacity(ServiceError):
    code, cs_code = 533, 4325


class ResourceUnavailable(ServiceError):
    code, cs_code = 534, 4380


class ResourceAllocation(ServiceError):
    code, cs_code = 535, 4370


class ResourceInUse(ServiceError):
    code, cs_code = 536, 4370


class NetworkRuleConflict(ServiceError):
    """CloudStack's NetworkRuleConflictException: a rule that collides with another one."""
    code, cs_code = 537, 4360


class RateLimited(ServiceError):
    code, cs_code = 429, 9999
