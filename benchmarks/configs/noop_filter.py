"""The pymesh-1hop-filter row's PythonFilter: a request and a response hook that do nothing, so the
row measures what the filter engine itself costs a request."""

from pymesh.filters import CONTINUE, HttpFilter


class NoOp(HttpFilter):
    def on_request_head(self, stream):
        return CONTINUE

    def on_response_head(self, stream):
        return CONTINUE
