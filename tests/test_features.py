import numpy as np
import torch

from lensml.features import conv_feature_maps, save_feature_grids
from lensml.models import create_model


def test_every_conv_layer_is_drawn(tmp_path):
    model = create_model("shear_cnn", image_size=(16, 16), width=4)
    maps = conv_feature_maps(model, torch.randn(1, 2, 16, 16))
    assert [m.shape for m in maps.values()] == [(4, 16, 16), (4, 16, 16), (8, 8, 8), (8, 8, 8), (16, 4, 4), (16, 4, 4)]
    paths = save_feature_grids(maps, tmp_path, max_maps=9)
    assert len(paths) == 6 and all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_maps_are_the_convolutions_outputs_before_an_in_place_activation():
    """lastro_epfl's first convolution feeds a ReLU that works in place: its map keeps the negative
    responses, exactly the convolution's output."""
    torch.manual_seed(0)
    model = create_model("lastro_epfl").eval()
    x = torch.randn(1, 1, 101, 101)
    first = next(iter(conv_feature_maps(model, x).values()))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        expected = conv(x)[0].numpy()
    assert (first < 0).any()
    assert np.allclose(first, expected, atol=1e-5)
