import pytest
import torch

from lensml.errors import BadInputError
from lensml.models import count_parameters, create_model, get_spec, list_models

# Keras' VGG19(include_top=False) on RGB input: 20,024,384 parameters (published figure).
KERAS_VGG19_NOTOP = 20_024_384


def test_vgg19_conv_base_matches_keras():
    model = create_model("lensnet_vgg19", in_channels=3, out_features=2, image_size=(40, 40))
    conv_base = count_parameters(model[0])
    assert conv_base == KERAS_VGG19_NOTOP
    head = 512 * 512 + 512 + 512 * 512 + 512 + 512 * 2 + 2
    assert count_parameters(model) == conv_base + head


@pytest.mark.parametrize("spec", list_models("shear"), ids=lambda s: s.name)
def test_shear_models_map_stamps_to_targets(spec):
    model = create_model(spec.name, in_channels=len(spec.inputs), out_features=3, image_size=(40, 40))
    assert model(torch.zeros(5, len(spec.inputs), 40, 40)).shape == (5, 3)


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(BadInputError, match="lensml models"):
        get_spec("resnet9000")


def test_too_small_stamps_are_refused():
    with pytest.raises(ValueError, match="32x32"):
        create_model("lensnet_vgg19", image_size=(16, 16))


@pytest.mark.parametrize("arch, every_norm_follows_a_conv", [("shear_net", True), ("shear_cnn", True), ("wsi_net", False)])
def test_batchnorm_folding_keeps_the_function_and_leaves_the_model_alone(arch, every_norm_follows_a_conv):
    """Folded for inference: same outputs (BatchNorm statistics and affine terms far from identity),
    no BatchNorm left where each follows a convolution (wsi_net's follow activations and stay), and
    the model it was made from untouched (still training, still with BatchNorm)."""
    from lensml.inference import with_batchnorm_folded

    torch.manual_seed(0)
    spec = get_spec(arch)
    model = create_model(arch)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.3, 3.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
    model.train()
    folded = with_batchnorm_folded(model)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) != every_norm_follows_a_conv
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(3, spec.defaults["in_channels"], *spec.defaults["image_size"])
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
