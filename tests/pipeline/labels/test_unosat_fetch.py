"""``pipeline unosat``: what a download may save, and how failures read."""

from __future__ import annotations

import pytest
import requests
import responses

from pipeline.aoi import load_aoi
from pipeline.errors import InputFileError, ServiceError
from pipeline.labels.fetch import fetch_unosat

URL = "https://data.example.org/cda.zip"


@pytest.fixture
def aoi(aoi_copy):
    def with_url(doc):
        doc["features"][0]["properties"]["labels"]["url"] = URL

    return load_aoi(aoi_copy("bucha", with_url))


def test_html_error_page_is_not_saved_as_zip(aoi, tmp_path):
    dest = tmp_path / "bucha.zip"
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET, URL, body=b"<!DOCTYPE html><html>Login</html>", content_type="text/html"
        )
        with pytest.raises(ServiceError, match="did not return a zip or GeoPackage.*text/html"):
            fetch_unosat(aoi, dest)
    assert [p.name for p in tmp_path.iterdir()] == ["bucha.geojson"]  # the AOI copy only


def test_geopackage_is_accepted(aoi, tmp_path):
    body = b"SQLite format 3\x00" + bytes(100)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, URL, body=body)
        assert fetch_unosat(aoi, tmp_path / "b.gpkg").read_bytes() == body


def test_unreachable_host_is_named(aoi, tmp_path):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, URL, body=requests.ConnectionError("refused"))
        with pytest.raises(ServiceError, match="data.example.org is unreachable"):
            fetch_unosat(aoi, tmp_path / "b.zip")
    assert [p.name for p in tmp_path.iterdir()] == ["bucha.geojson"]  # the AOI copy only


def test_map_only_aoi_has_nothing_to_fetch(aoi_copy, tmp_path):
    def drop_labels(doc):
        del doc["features"][0]["properties"]["labels"]

    aoi = load_aoi(aoi_copy("bucha", drop_labels))
    with pytest.raises(InputFileError, match="map-only"):
        fetch_unosat(aoi, tmp_path / "b.zip")
