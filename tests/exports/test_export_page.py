"""The browser export page: filters as a form, a count, and a download link to the API."""

from tests.conftest import browser_login
from tests.exports.test_export_api import labeled  # noqa: F401 - the fixture


def test_export_page_counts_and_links_the_download(client, admin, labeled) -> None:  # noqa: F811
    browser_login(client, admin)
    pid = labeled["project"]["id"]
    page = client.get(f"/projects/{pid}/export")
    assert page.status_code == 200
    assert "Up to <strong>5</strong> pairs" in page.text
    assert f'href="/api/v1/projects/{pid}/export?kind=pairs&amp;format=jsonl"' in page.text

    fragment = client.get(
        f"/projects/{pid}/export",
        params={"kind": "rankings", "format": "parquet", "exclude_flags": "unsafe"},
        headers={"HX-Request": "true"},
    )
    assert "<html" not in fragment.text and "Up to <strong>2</strong> rankings" in fragment.text
    link = fragment.text.split('href="')[1].split('"')[0].replace("&amp;", "&")
    download = client.get(link)
    assert download.status_code == 200 and download.content[:4] == b"PAR1"


def test_export_page_reports_bad_filters(client, admin, labeled) -> None:  # noqa: F811
    browser_login(client, admin)
    pid = labeled["project"]["id"]
    page = client.get(f"/projects/{pid}/export", params={"min_agreement": "3"})
    assert page.status_code == 200 and "min_agreement" in page.text and "Download" not in page.text
    page = client.get(f"/projects/{pid}/export", params={"labelers": "l-nobody"})
    assert "not labelers of this project" in page.text


def test_export_page_roles(client, make_account, labeled) -> None:  # noqa: F811
    browser_login(client, labeled["first"])  # a labeler
    assert client.get(f"/projects/{labeled['project']['id']}/export").status_code == 403
