"""CompiledCors: origin matching and the headers Envoy's CORS filter writes."""

from __future__ import annotations

from pymesh.api import model
from pymesh.routing.cors import CompiledCors


def test_origins_match_as_string_matches_and_star_allows_any():
    cors = CompiledCors.from_model(model.CorsPolicy(allow_origins=(
        model.StringMatch("prefix", "https://a."), model.StringMatch("regex", "https://b[0-9]"))))
    assert cors.allows("https://a.example") and cors.allows("https://b7")
    assert not cors.allows("https://b77") and not cors.allows("http://a.example")
    assert CompiledCors.from_model(model.CorsPolicy(allow_origins=(model.StringMatch("exact", "*"),))).allows("x")


def test_headers_only_for_what_is_configured():
    bare = CompiledCors.from_model(model.CorsPolicy(allow_origins=(model.StringMatch("exact", "o"),)))
    assert bare.preflight_headers(b"o") == ((b"access-control-allow-origin", b"o"),)
    assert bare.response_ops("o").set == (("access-control-allow-origin", "o"),)
    full = CompiledCors.from_model(model.CorsPolicy(allow_methods=("GET",), max_age=0, allow_credentials=False,
                                                    expose_headers=("a", "b")))
    assert dict(full.preflight) == {b"access-control-allow-methods": b"GET", b"access-control-max-age": b"0",
                                    b"access-control-expose-headers": b"a,b"}  # as Envoy's filter sends it
    assert dict(full.response) == {"access-control-expose-headers": "a,b"}
