"""estimators.uniforms: two float32 uniforms per 64-bit draw of torch's generator, with torch.rand's
distribution (the grid k 2^-24, k uniform on 0 .. 2^24 - 1), and the Exp(1) draws made from them.

The statistical checks split the suite's false-failure rate over their assertions (tests/statutil.py)."""

from __future__ import annotations

import math

import torch

from estimators.uniforms import CODE_BLOCK, UNIFORM_STEP, standard_exponential, uniform_buffer, uniform_codes_, uniforms

from .statutil import z_bound


def test_codes_are_two_24_bit_numbers_per_word_and_a_seed_fixes_them():
    words = uniform_buffer(7, "cpu")
    assert words.dtype == torch.int64 and words.numel() == 4  # 7 codes need 4 words
    torch.manual_seed(11)
    codes = uniform_codes_(words).clone()
    assert codes.dtype == torch.int32 and codes.numel() == 8
    assert codes.min() >= -(2**23) and codes.max() < 2**23
    torch.manual_seed(11)
    assert torch.equal(uniform_codes_(uniform_buffer(8, "cpu")), codes)


def chi_square_z(counts: torch.Tensor) -> float:
    """(X^2 - df) / sqrt(2 df) of equal-probability bins: about N(0, 1) when the counts are uniform."""
    expected = counts.sum().item() / counts.numel()
    x2 = ((counts.double() - expected) ** 2 / expected).sum().item()
    df = counts.numel() - 1
    return (x2 - df) / math.sqrt(2 * df)


def test_float32_uniforms_are_torch_rand_s_grid_with_every_bit_uniform_and_the_halves_independent():
    """2^21 draws over several blocks: each is k 2^-24 with k an integer in [0, 2^24); the top 8 and the
    bottom 8 bits of k are uniform (chi-square over 256 bins each) and the two codes of a word are
    uncorrelated (sqrt(n) r ~ N(0, 1)); three assertions share the false-failure rate."""
    torch.manual_seed(0)
    n = 2**21 + 3  # not a whole number of blocks or words
    assert n > 3 * CODE_BLOCK
    u = uniforms((n,), torch.float32, "cpu")
    k = u.double() / UNIFORM_STEP
    assert torch.equal(k, k.round()) and k.min() >= 0 and k.max() <= 2**24 - 1
    k = k.long()
    z = z_bound(3, two_sided=False)
    assert chi_square_z(torch.bincount(k >> 16, minlength=256)) < z
    assert chi_square_z(torch.bincount(k & 255, minlength=256)) < z
    a, b = u[: n - 1 : 2].double(), u[1:n:2].double()  # the two halves of each word
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(r) * math.sqrt(a.numel()) < z_bound(3)


def test_float64_draws_are_torch_rand_itself():
    torch.manual_seed(4)
    got = uniforms((5, 3), torch.float64, "cpu")
    torch.manual_seed(4)
    assert torch.equal(got, torch.rand((5, 3), dtype=torch.float64))


def test_the_finish_map_is_applied_to_every_block():
    torch.manual_seed(2)
    plain = uniforms((CODE_BLOCK + 5,), torch.float32, "cpu")
    torch.manual_seed(2)
    doubled = uniforms((CODE_BLOCK + 5,), torch.float32, "cpu", lambda x: x.mul_(2))
    assert torch.equal(doubled, plain * 2)


def test_standard_exponential_has_mean_and_variance_one_in_both_dtypes():
    """Exp(1): mean 1 and variance 1; the sample mean's standard error is 1 / sqrt(n), the sample variance's
    sqrt((mu4 - 1) / n) = sqrt(8 / n) (mu4 = 9); four assertions. Without ``codes`` they are -log of torch.rand itself."""
    z = z_bound(4)
    n = 2**20
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(9)
        e = standard_exponential((n,), dtype, "cpu", codes=True)
        assert e.dtype == dtype and e.min() > 0 and e.max() <= -math.log(torch.finfo(dtype).tiny)
        e = e.double()
        assert abs(e.mean().item() - 1) < z / math.sqrt(n)
        assert abs(e.var().item() - 1) < z * math.sqrt(8 / n)
    torch.manual_seed(9)
    plain = standard_exponential((5,), torch.float32, "cpu")
    torch.manual_seed(9)
    assert torch.equal(plain, -torch.rand(5).log())
