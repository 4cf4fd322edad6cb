import torch

from lensml.data.augment import apply_affine, augment_batch, random_affine


def _theta(linear, shift=(0.0, 0.0)):
    return torch.tensor([[[linear[0][0], linear[0][1], shift[0]], [linear[1][0], linear[1][1], shift[1]]]])


def test_exact_maps_reproduce_flips_and_rotations():
    x = torch.randn(1, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(apply_affine(x, _theta([[1, 0], [0, 1]])), x, atol=1e-5)
    assert torch.allclose(apply_affine(x, _theta([[-1, 0], [0, 1]])), torch.flip(x, dims=[-1]), atol=1e-5)
    assert torch.allclose(apply_affine(x, _theta([[1, 0], [0, -1]])), torch.flip(x, dims=[-2]), atol=1e-5)
    rotated = apply_affine(x, _theta([[0, -1], [1, 0]]))
    assert any(torch.allclose(rotated, torch.rot90(x, k, dims=(-2, -1)), atol=1e-5) for k in (1, 3))


def test_shift_fills_with_zero_and_moves_the_image():
    x = torch.ones(1, 1, 10, 10)
    shifted = apply_affine(x, _theta([[1, 0], [0, 1]], shift=(0.2, 0.0)))  # 10% of the width
    assert torch.all(shifted[..., -1] == 0) and torch.all(shifted[..., :8] == 1)


def test_augmentation_is_seeded_and_covers_the_ranges():
    x = torch.randn(256, 4, 21, 21)
    a, _ = augment_batch(x, torch.zeros(256), torch.Generator().manual_seed(3))
    b, _ = augment_batch(x, torch.zeros(256), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    theta = random_affine(4000, torch.Generator().manual_seed(0))
    scale = torch.linalg.det(theta[:, :, :2]).abs()  # 1 / zoom^2: zoom in [0.75, 1.1]
    assert scale.min() >= 1 / 1.1**2 - 1e-5 and scale.max() <= 1 / 0.75**2 + 1e-5
    assert (scale == 1).float().mean().item() > 0.4  # half the images keep their scale
    assert theta[:, :, 2].abs().max() <= 0.2 + 1e-6
    untouched = (theta - torch.tensor([[1.0, 0, 0], [0, 1, 0]])).abs().amax(dim=(1, 2)) < 1e-6
    assert 0.005 < untouched.float().mean().item() < 0.04  # (1/2)^6 with the rotation coin: about 1/64


def test_a_part_of_a_batch_is_augmented_as_in_the_whole_batch():
    """What one process of a data-parallel run sees equals its slice of the single-process batch."""
    from lensml.training import BatchPart

    x = torch.randn(10, 1, 21, 21)
    whole, _ = augment_batch(x, torch.zeros(10), torch.Generator().manual_seed(5))
    part, _ = augment_batch(x[3:7], torch.zeros(4), torch.Generator().manual_seed(5), BatchPart(10, 3, 7))
    assert torch.equal(part, whole[3:7])
