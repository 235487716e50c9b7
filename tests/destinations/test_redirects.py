import pytest

from headwater.destinations.redirects import Redirects
from headwater.errors import ConfigError


def test_the_longest_prefix_wins_and_the_rest_of_the_url_is_kept() -> None:
    redirects = Redirects(
        {
            "https://api.vendor.com": "http://127.0.0.1:9000",
            "https://api.vendor.com/v2": "http://127.0.0.1:9002/sandbox",
        }
    )
    assert (
        redirects.rewrite("https://api.vendor.com/v1/track?x=1")
        == "http://127.0.0.1:9000/v1/track?x=1"
    )
    assert (
        redirects.rewrite("https://api.vendor.com/v2/batch")
        == "http://127.0.0.1:9002/sandbox/batch"
    )
    assert redirects.rewrite("https://other.example/v1") == "https://other.example/v1"
    assert not Redirects()
    assert Redirects().rewrite("https://api.vendor.com/x") == "https://api.vendor.com/x"


@pytest.mark.parametrize(
    "bad", [{"api.vendor.com": "http://127.0.0.1:1"}, {"https://a.com": "ftp://x"}]
)
def test_a_prefix_that_is_not_an_http_url_is_a_config_error(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="request_redirects"):
        Redirects(bad)
