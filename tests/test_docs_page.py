"""``GET /docs``: Swagger UI on the admin API's OpenAPI document (and ``/docs/v1`` on the data plane's), over HTTP.

The page names only assets of the gateway itself (no CDN), each asset is the vendored file with its right media
type (gzip-compressed when asked, 304 on a matching ETag), the document it points at is served, unknown names are a
404 in the OpenAI error shape, and no key is needed. With Chromium on the machine, a headless browser loads the page
under its Content-Security-Policy and Swagger UI renders the document's operations.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from switchyard.server.docs_routes import ASSETS, SWAGGER_UI_VERSION
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import gov_config, no_keepalive_client

STATIC = resources.files("switchyard.server").joinpath("static", "swagger-ui")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    store = f"sqlite:///{Path(tmp_path_factory.mktemp('docs'))}/s.db"
    with run_gateway(gov_config(store)) as running:  # a master key is configured: the pages still need none
        yield running


@pytest.fixture(scope="module")
def http(gw: RunningGateway) -> Iterator[httpx.Client]:
    with no_keepalive_client(gw.url) as c:
        yield c


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href|data-spec-url)="([^"]*)"', html)


@pytest.mark.parametrize(("page", "spec"), [("/docs", "/admin/openapi.json"), ("/docs/v1", "/v1/openapi.json")])
def test_the_page_names_only_local_assets_and_its_document(http: httpx.Client, page: str, spec: str) -> None:
    r = http.get(page)  # no key
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    refs = _references(html)
    assert f'data-spec-url="{spec}"' in html
    assert any(ref.startswith("/docs/assets/swagger-ui-bundle.js?v=") for ref in refs)
    assert any(ref.startswith("/docs/assets/swagger-ui.css?v=") for ref in refs)
    for ref in refs:  # every reference is a path on this gateway: no scheme, no other host
        assert ref.startswith("/") and not ref.startswith("//"), ref
    assert "http://" not in html and "https://" not in html
    assert "<script>" not in html  # no inline script: the CSP forbids it, and the page needs none


def test_each_asset_is_the_vendored_file_with_its_media_type(http: httpx.Client) -> None:
    html = http.get("/docs").text
    assets = [ref for ref in _references(html) if ref.startswith("/docs/assets/")]
    assert len(assets) == 5
    for ref in assets:
        name = ref.split("/")[-1].split("?")[0]
        r = http.get(ref, headers={"accept-encoding": "identity"})
        assert r.status_code == 200, ref
        assert r.headers["content-type"] == ASSETS[name]
        assert r.content == STATIC.joinpath(name).read_bytes()
        assert r.headers["etag"].strip('"') == ref.split("?v=")[1]
    types = {n: http.get(f"/docs/assets/{n}").headers["content-type"] for n in
             ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE")}
    assert types == {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
                     "swagger-ui.css": "text/css; charset=utf-8", "favicon-32x32.png": "image/png",
                     "LICENSE": "text/plain; charset=utf-8"}


def test_gzip_and_etag(http: httpx.Client) -> None:
    plain = STATIC.joinpath("swagger-ui-bundle.js").read_bytes()
    with http.stream("GET", "/docs/assets/swagger-ui-bundle.js", headers={"accept-encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
        etag = r.headers["etag"]
    assert len(raw) < len(plain) / 2 and gzip.decompress(raw) == plain
    again = http.get("/docs/assets/swagger-ui-bundle.js", headers={"accept-encoding": "gzip", "if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    refused = http.get("/docs/assets/swagger-ui-bundle.js", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers and refused.content == plain
    other = http.get("/docs/assets/swagger-ui-bundle.js", headers={"accept-encoding": "identity",
                                                                   "if-none-match": etag})
    assert other.status_code == 200  # the gzip representation's tag does not match the plain one


@pytest.mark.parametrize("spec", ["/admin/openapi.json", "/v1/openapi.json"])
def test_the_documents_the_pages_point_at_are_served(http: httpx.Client, spec: str) -> None:
    r = http.get(spec)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert ("/admin/keys" if spec.startswith("/admin") else "/v1/chat/completions") in doc["paths"]


@pytest.mark.parametrize("path", ["/docs/assets/nope.js", "/docs/assets/..%2Fapp.py", "/docs/assets/docs_routes.py",
                                  "/docs/assets/VENDORED.md", "/docs/nope"])
def test_anything_else_is_a_404_error_object(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_url"


def test_the_viewer_is_configured_to_stay_on_this_origin() -> None:
    init = STATIC.joinpath("docs.js").read_text()
    assert 'validatorUrl: "none"' in init and "queryConfigEnabled: false" in init
    assert "persistAuthorization: false" in init
    css = STATIC.joinpath("swagger-ui.css").read_text()
    assert not re.findall(r"url\(\s*['\"]?(?:https?:)?//", css)  # no font or image from elsewhere
    bundle = STATIC.joinpath("swagger-ui-bundle.js").read_text()
    assert SWAGGER_UI_VERSION in bundle


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (Debian package chromium)")
def test_swagger_ui_renders_the_document_in_a_browser(gw: RunningGateway, tmp_path: Path) -> None:
    """Headless Chromium runs the page's scripts under its CSP; the DOM then shows the document's operations."""
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path}", "--virtual-time-budget=15000", "--dump-dom", f"{gw.url}/docs"]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "Switchyard admin API" in dom  # the document's info.title, rendered by Swagger UI
    assert "opblock" in dom and "/admin/keys" in dom  # an operation block per path, as Swagger UI draws them


def test_the_wheel_carries_every_asset(tmp_path: Path) -> None:
    """The wheel that pip installs holds each file /docs serves (hatchling, the project's build backend)."""
    try:
        from hatchling.builders.wheel import WheelBuilder
    except ImportError:
        pytest.skip("hatchling is not installed (it is in the dev extra)")
    root = Path(__file__).resolve().parents[1]
    wheel = next(iter(WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"])))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = {n for n in ASSETS if f"switchyard/server/static/swagger-ui/{n}" not in names}
    assert not missing and "switchyard/server/docs_routes.py" in names
