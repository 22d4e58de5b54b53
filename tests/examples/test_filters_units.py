"""The example filters' own logic, without a proxy: configuration they refuse, decisions they make."""

import pytest

from examples.filters import api_key, external_check, sampling
from pymesh.filters import Metrics


def make(cls, config):
    return cls("default/example", config, Metrics())


@pytest.mark.parametrize("cls, config, message", [
    (api_key.ApiKeyCheck, {}, "pluginConfig.keys"),
    (api_key.ApiKeyCheck, {"keys": []}, "pluginConfig.keys"),
    (api_key.ApiKeyCheck, {"keys": ["ok", ""]}, "pluginConfig.keys"),
    (api_key.ApiKeyCheck, {"keys": "one"}, "pluginConfig.keys"),
    (sampling.RequestIdSampling, {"percentage": 101}, "pluginConfig.percentage"),
    (sampling.RequestIdSampling, {"percentage": -1}, "pluginConfig.percentage"),
    (sampling.RequestIdSampling, {"percentage": "10"}, "pluginConfig.percentage"),
    (sampling.RequestIdSampling, {"percentage": True}, "pluginConfig.percentage"),
    (external_check.ExternalCheck, {}, "pluginConfig.url"),
    (external_check.ExternalCheck, {"url": "ftp://127.0.0.1/"}, "pluginConfig.url"),
    (external_check.ExternalCheck, {"url": "http:///path"}, "pluginConfig.url"),
    (external_check.ExternalCheck, {"url": "http://127.0.0.1:1/", "timeout_ms": 0}, "pluginConfig.timeout_ms"),
    (external_check.ExternalCheck, {"url": "http://127.0.0.1:1/", "timeout_ms": 10_001}, "pluginConfig.timeout_ms"),
    (external_check.ExternalCheck, {"url": "http://127.0.0.1:1/", "timeout_ms": 0.5}, "pluginConfig.timeout_ms"),
])
def test_bad_plugin_config_is_refused_at_setup(cls, config, message):
    with pytest.raises(ValueError, match=message):
        make(cls, config)


@pytest.mark.parametrize("presented, known", [
    (b"demo-key-1", True), (b"demo-key-2", True), (b"demo-key-", False), (b"demo-key-10", False), (b"", False),
])
def test_api_key_matches_only_whole_keys(presented, known):
    assert make(api_key.ApiKeyCheck, {"keys": ["demo-key-1", "demo-key-2"]}).known(presented) is known


def test_sampling_is_deterministic_and_near_its_percentage():
    ids = [f"request-{n}" for n in range(4000)]
    first = [sampling.sampled(i, 25) for i in ids]
    assert first == [sampling.sampled(i, 25) for i in ids]
    assert 900 <= sum(first) <= 1100  # 25% of 4000, with a generous margin
    assert not any(sampling.sampled(i, 0) for i in ids) and all(sampling.sampled(i, 100) for i in ids)
    # a smaller percentage samples a subset of a larger one's ids: raising it never unsamples one
    assert all(sampling.sampled(i, 50) for i, s in zip(ids, first) if s)


def test_external_check_reads_its_url():
    check = make(external_check.ExternalCheck, {"url": "https://auth.example:8443/v1/check?x=1", "timeout_ms": 250})
    assert (check.host, check.port, check.tls, check.target, check.timeout) == \
        ("auth.example", 8443, True, "/v1/check?x=1", 0.25)
    assert check.forwarded == ("authorization",)
