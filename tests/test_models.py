"""The architecture of docs/protocol.md §1: parameter counts and the activation registry."""

import pytest
import torch

from repro.config import ACTIVATIONS
from repro.encoders import build_model
from repro.models import ConvDecoder, count_parameters, make_activation


def test_gon_decoder_has_the_published_74321_parameters_at_nz_32():
    assert count_parameters(build_model("gon", nz=32)) == 74_321


def test_autoencoder_has_148673_parameters_so_gon_is_about_half():
    ae = count_parameters(build_model("ae", nz=32))
    assert ae == 148_673
    assert count_parameters(build_model("gon", nz=32)) / ae == pytest.approx(0.5, abs=0.001)


def test_decoder_output_channels_come_from_the_data():
    decoder = ConvDecoder(nz=8, ngf=4, channels=3)
    assert decoder(torch.zeros(2, 8, 1, 1)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_builds_a_working_decoder(name):
    decoder = ConvDecoder(nz=4, ngf=2, activation=name)
    out = decoder(torch.randn(3, 4, 1, 1))
    assert out.shape == (3, 1, 32, 32)
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()


def test_unknown_activation_is_refused_with_the_list():
    with pytest.raises(ValueError, match="allowed: .*elu"):
        make_activation("swishy")
