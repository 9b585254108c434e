"""GRD calibration arithmetic: the annotation look-up tables, both noise layouts, sigma0."""

from __future__ import annotations

import numpy as np
import pytest
from support.s1_server import A0, A_SLOPE, NOISE0, calibration_xml, noise_xml

from pipeline.errors import InputFileError
from pipeline.radar.grd import calibrate, noise_table, sigma_lut

OLD_NOISE = (
    b'<?xml version="1.0"?><noise><noiseVectorList count="2">'
    b'<noiseVector><line>0</line><pixel count="2">0 99</pixel>'
    b'<noiseLut count="2">10 20</noiseLut></noiseVector>'
    b'<noiseVector><line>99</line><pixel count="2">0 99</pixel>'
    b'<noiseLut count="2">30 40</noiseLut></noiseVector></noiseVectorList></noise>'
)


def test_sigma_lut_is_bilinear_between_vectors():
    lut = sigma_lut(calibration_xml(300, 200, "vv"), "t")
    rows, cols = np.array([0.0, 77.0, 299.0]), np.array([0.0, 13.0, 199.0])
    assert np.allclose(lut.window(rows, cols), (A0 + A_SLOPE * cols)[None, :].repeat(3, 0))


def test_noise_layouts_before_and_after_ipf_29():
    new = noise_table(noise_xml(300, 200), "t")
    assert np.allclose(new.window(np.arange(3.0), np.arange(4.0)), NOISE0)
    old = noise_table(OLD_NOISE, "t")
    assert old.azimuth == ()
    got = old.window(np.array([0.0, 99.0]), np.array([0.0, 99.0]))
    assert np.allclose(got, [[10, 20], [30, 40]])


def test_sigma0_from_digital_numbers():
    lut = sigma_lut(calibration_xml(10, 10, "vv"), "t")
    noise = noise_table(noise_xml(10, 10), "t")
    rows = cols = np.arange(10.0)
    a = A0 + A_SLOPE * cols
    truth = np.full((10, 10), 0.05)
    dn = np.round(np.sqrt(truth * a * a + NOISE0)).astype(np.uint16)
    dn[0, 0] = 0
    out = calibrate(dn, rows, cols, lut, noise)
    assert np.isnan(out[0, 0])
    assert np.nanmax(np.abs(out / truth - 1)) < 0.01
    raw = calibrate(dn, rows, cols, lut, None)
    assert np.nanmin(raw - out) > 0  # without noise removal every value is higher
    floor = calibrate(np.ones((1, 1), np.uint16), rows[:1], cols[:1], lut, noise)
    assert float(floor[0, 0]) == pytest.approx(1e-5)


def test_broken_annotation_is_refused():
    with pytest.raises(InputFileError, match="unreadable annotation XML"):
        sigma_lut(b"<calibration><oops", "x.xml")
    with pytest.raises(InputFileError, match="expected <calibration>"):
        sigma_lut(OLD_NOISE, "x.xml")
