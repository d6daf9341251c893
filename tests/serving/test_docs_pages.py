"""/docs (Swagger UI) and /redoc work offline: every asset they load comes from the daemon.

A daemon often runs where nothing outside is reachable; pages that loaded their scripts
from a CDN were blank there.
"""

from __future__ import annotations

import re

import pytest

from tests.serving.conftest import Running

# What a page loads: tags' src and href, Swagger UI's spec url, ReDoc's spec-url.
_REFERENCES = re.compile(r"""(?:\b(?:src|href|spec-url)="([^"]+)"|\burl: '([^']+)')""")


def references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_a_docs_page_loads_everything_from_the_daemon_itself(
    served: Running, page: str, script: str
) -> None:
    response = served.http.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    loaded = references(html)
    assert any(url.endswith(script) for url in loaded), loaded
    assert "/openapi.json" in loaded
    for url in loaded:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = served.http.get(url)
        assert asset.status_code == 200 and asset.content, url


def test_swagger_ui_is_told_not_to_call_the_online_validator(served: Running) -> None:
    assert '"validatorUrl": null' in served.http.get("/docs").text


def test_the_assets_are_the_real_bundles(served: Running) -> None:
    css = served.http.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css") and len(css.content) > 10_000
    bundle = served.http.get("/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    assert b"Redoc" in served.http.get("/docs/assets/redoc.standalone.js").content
