"""API throttles that also reach the calls DRF's own throttles never see.

DRF checks throttles *after* authentication and permissions, so with every view closed to
anonymous callers its AnonRateThrottle never counts anything: a wrong token is refused (401)
before any throttle runs, and so is a call without credentials. Token guessing would then be
unlimited. Here:

- ``AddressThrottle`` counts per client address (DRF's ``get_ident``, which honours
  NUM_PROXIES) at the ``anon`` rate, without touching ``request.user``;
- ``ThrottledTokenAuthentication`` counts each *failed* token against it, and refuses (429)
  every token of an address over the rate before checking it;
- ``RolePermission`` (permissions.py) counts anonymous calls against it.

Signed-in callers go on through DRF's UserRateThrottle (settings: ``user`` rate).
"""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle


class AddressThrottle(SimpleRateThrottle):
    scope = "anon"
    # Set by SimpleRateThrottle.__init__ from the rate (parse_rate); the stubs do not declare them.
    num_requests: int
    duration: int

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": "address", "ident": self.get_ident(request)}

    def exhausted(self, request) -> bool:
        """Whether the address is over the rate, without counting this call."""
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        self.history = history
        return len(history) >= self.num_requests

    def refuse_if_over(self, request, view=None) -> None:
        """Count this call; raise Throttled (429, Retry-After) if it is one too many."""
        if not self.allow_request(request, view):
            raise Throttled(self.wait())


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's token check, with failed tokens counted per address (see the module)."""

    def authenticate(self, request):
        if not get_authorization_header(request):
            return None
        throttle = AddressThrottle()
        if throttle.exhausted(request):
            raise Throttled(throttle.wait())
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.refuse_if_over(request)
            raise
