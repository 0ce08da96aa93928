"""The dashboards' files as the RPC server serves them: pages and assets with their content
types, a strict Content-Security-Policy, revalidation by ETag, and nothing outside the shipped
table (no path reaches the file system). The pages themselves run in a browser in
tests/integration/test_dashboards_devnet.py."""

from __future__ import annotations

import re

import pytest

from ogpu_node.rpc.dashboard_files import ASSET_NAME, PAGES, load_assets
from tests.rpc.conftest import Rpc

ASSETS = load_assets()


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_each_page_is_html_with_a_strict_policy(rpc: Rpc, path: str) -> None:
    response = await rpc.http.get(rpc.address.http_url.rstrip("/") + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == ASSETS[PAGES[path]].body


@pytest.mark.parametrize(("name", "content_type"), [
    ("tx.js", "text/javascript; charset=utf-8"), ("dashboard.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml")])
async def test_assets_have_their_content_type_and_revalidate_by_etag(
        rpc: Rpc, name: str, content_type: str) -> None:
    url = rpc.address.http_url + "dashboard/static/" + name
    first = await rpc.http.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == content_type
    again = await rpc.http.get(url, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = await rpc.http.get(url, headers={"if-none-match": '"0000"'})
    assert stale.status_code == 200 and stale.content == first.content


@pytest.mark.parametrize("path", [
    "dashboard/static/../rpc/server.py", "dashboard/static/%2e%2e/__init__.py",
    "dashboard/static/", "dashboard/static/.hidden.js", "dashboard/static/sub/tx.js",
    "dashboard/static/tx.js%00.png", "dashboard/nowhere", "dashboard/static/" + "a" * 5000])
async def test_anything_outside_the_table_is_404(rpc: Rpc, path: str) -> None:
    response = await rpc.http.get(rpc.address.http_url + path)
    assert response.status_code == 404
    assert len(response.content) < 200  # the path is echoed cut short


async def test_the_bare_prefix_redirects_and_only_get_is_served(rpc: Rpc) -> None:
    bare = await rpc.http.get(rpc.address.http_url + "dashboard")
    assert bare.status_code == 308 and bare.headers["location"] == "/dashboard/"
    post = await rpc.http.post(rpc.address.http_url + "dashboard/customer", content=b"x")
    assert post.status_code == 405
    head = await rpc.http.head(rpc.address.http_url + "dashboard/customer")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == ASSETS["customer.html"].etag


def test_pages_have_no_inline_script_or_style_and_name_only_shipped_files() -> None:
    for name, asset in ASSETS.items():
        text = asset.body.decode()
        if name.endswith(".html"):
            assert re.findall(r"<script(?![^>]*\ssrc=)", text) == [], name
            assert "<style" not in text and " style=" not in text, name
            assert re.search(r"\son[a-z]+=", text) is None, name
            for ref in re.findall(r'"/dashboard/static/([^"]+)"', text):
                assert ref in ASSETS, (name, ref)
        if name.endswith(".js"):
            for ref in re.findall(r'from "\./([^"]+)"', text):
                assert ref in ASSETS, (name, ref)
    assert all(ASSET_NAME.match(name) for name in ASSETS)
    assert {"network.html", "customer.html", "provider.html"} <= set(ASSETS)
