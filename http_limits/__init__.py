"""Limits every HTTP listener of the project applies before an app sees a request: the size of
the request line plus headers (431) and the time a client has to send them (408, then close).

uvicorn's httptools protocol has neither: 64 MiB of headers were parsed (seconds of the one event
loop each) and answered, and a client that sends a header byte now and then held its connection
for ever. `with_header_limits(base)` wraps any uvicorn HTTP protocol class (pass the result as
`uvicorn.Config(http=...)`), so a custom protocol class can be wrapped the same way."""

from http_limits.protocol import HeaderLimits, with_header_limits

__all__ = ["HeaderLimits", "with_header_limits"]
