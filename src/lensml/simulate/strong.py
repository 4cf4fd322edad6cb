"""Strong-lens scenes: parameters drawn per image, rendered in batches with caustics on torch.

A scene is a deflector (caustics SIE plus ExternalShear for the mass, an elliptical Sersic for its
light), an elliptical Sersic source with up to `clumps_max` compact Sersic clumps behind it, and up
to `neighbours_max` unlensed field objects. Non-lenses use the same deflectors and field objects;
only the source differs (absent, offset beyond the caustic, behind a deflector too light to split
it, or no deflector at all), so a classifier has to find arcs rather than bright or red galaxies.
Three more non-lens kinds are look-alikes with no lensing at all (mass and shear zero, the source
slots drawn unlensed): a blue companion beside the deflector, half of them tangential and
arc-like; a merger with a second galaxy of the deflector's colour; star-forming knots on a ring or
spiral around the galaxy.

Every random number of scene `ID` comes from numpy's generator seeded with (seed, ID), drawn in a
fixed order whatever the scene's kind, so any scene can be redrawn alone and the lens and
non-lens versions of an ID share their deflector and neighbours. Rendering is deterministic.

Light slots of a scene, in order: 0 deflector light (or the central field galaxy), 1 source,
2 .. 1 + clumps_max source clumps (slots 1 .. 1 + clumps_max are lensed), then the field objects.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from caustics.utils import to_elliptical, translate_rotate

from .surveys import NONLENS_KINDS, PSF_LEVELS, StrongSimConfig, draw_mask, psf_image, psf_matrix

LIGHT_FIELDS = ("x0", "y0", "q", "phi", "n", "Re")  # arcsec, arcsec, -, rad, -, arcsec (major axis)
MASS_FIELDS = ("x0", "y0", "q", "phi", "theta_E", "gamma1", "gamma2")
STAR_RE_PIXELS = 0.4  # half-light radius of compact field objects, in pixels
FINE_CHUNK = 32768  # supersampled pixels evaluated at once (bounds memory)
EXPONENT_FLOOR = 80.0
CHUNK_POINTS = 131072  # points per chain of element-wise operations (fits in a core's cache)
LOOKALIKE_KINDS = ("companion", "merger", "ring")  # non-lenses without any lensing mass
# kinds whose source slot holds one galaxy (and its clumps), placed by `place_source` in draw_scene;
# --sources replaces that galaxy with a real one
SOURCE_KINDS = ("lens", "offset_source", "small_mass", "companion")


def n_slots(config: StrongSimConfig) -> int:
    return 2 + config.clumps_max + config.neighbours_max


def lensed_slots(config: StrongSimConfig) -> np.ndarray:
    lensed = np.zeros(n_slots(config), dtype=bool)
    lensed[1 : 2 + config.clumps_max] = True
    return lensed


@dataclass(frozen=True)
class Scene:
    """Parameters of one scene; `flux` is total flux per band in the data's units (0: slot unused)."""

    image_id: int
    is_lens: bool
    kind: str  # "lens" or one of NONLENS_KINDS
    theta_e: float  # Einstein radius of the mass in the scene, arcsec
    mass: np.ndarray  # (7,) MASS_FIELDS
    light: np.ndarray  # (slots, 6) LIGHT_FIELDS
    flux: np.ndarray  # (slots, bands)
    noise_factor: float
    mask: tuple[int, int, int, int, int] | None  # band, y0, y1, x0, x1 (array indices) set to 100
    noise_seed: int
    seeing: float = 1.0  # this scene's PSF FWHM / the survey's (config.psf_jitter)


def draw_scene(config: StrongSimConfig, seed: int, image_id: int, lens_fraction: float) -> Scene:
    """Draw scene `image_id`. The order and number of draws are part of the file format."""
    rng = np.random.default_rng([int(seed), int(image_id)])
    nb, scale = config.n_bands, config.pixel_scale
    half = config.image_size * scale / 2.0

    def uniform(bounds: tuple[float, float], size: int | None = None):
        return rng.uniform(bounds[0], bounds[1], size)

    def loguniform(bounds: tuple[float, float], size: int | None = None):
        return np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]), size))

    def colours(ranges: Sequence[tuple[float, float]]) -> np.ndarray:
        return np.array([rng.uniform(lo, hi) for lo, hi in ranges])

    u_lens, u_kind = rng.random(2)
    is_lens = bool(u_lens < lens_fraction)
    shares = np.cumsum(config.nonlens_mix) / sum(config.nonlens_mix)
    kind = "lens" if is_lens else NONLENS_KINDS[min(int(np.searchsorted(shares, u_kind, side="right")), len(NONLENS_KINDS) - 1)]

    # deflector
    theta_e = float(loguniform(config.theta_e))
    cx, cy = rng.uniform(-0.5, 0.5, 2) * scale
    q_mass, phi_mass = uniform(config.lens_q), rng.uniform(0.0, math.pi)
    gamma, phi_gamma = rng.uniform(0.0, config.shear_max), rng.uniform(0.0, math.pi)
    lens_n = uniform(config.lens_n)
    lens_re = max(theta_e * uniform(config.lens_re_ratio), scale)
    q_light = float(np.clip(q_mass + rng.normal(0.0, 0.05), 0.3, 0.99))
    phi_light = phi_mass + rng.normal(0.0, 0.1)
    lens_mag = uniform(config.lens_mag) - 5.0 * math.log10(theta_e)
    lens_col = colours(config.lens_colour)
    # source and its clumps
    src_re, src_n = loguniform(config.source_re), uniform(config.source_n)
    src_q, src_phi = uniform(config.source_q), rng.uniform(0.0, math.pi)
    src_mag, src_col = uniform(config.source_mag), colours(config.source_colour)
    u_radius, src_angle = rng.random(), rng.uniform(0.0, 2.0 * math.pi)
    n_clumps = int(rng.integers(0, config.clumps_max + 1))
    k = config.clumps_max
    clump_offset = rng.normal(0.0, 1.0, (k, 2)) * src_re
    clump_re, clump_share = loguniform(config.clump_re, k), uniform(config.clump_flux, k)
    clump_col = rng.normal(0.0, 0.15, (k, nb))
    small_theta = float(uniform(config.small_theta_e))
    # central field galaxy (kind "field")
    field_light = [rng.uniform(0.8, 2.5), loguniform(config.field_re), rng.uniform(0.1, 0.95), rng.uniform(0, math.pi)]  # down to edge-on discs
    field_mag, field_col = uniform(config.field_mag), colours(config.neighbour_colour)
    # field objects
    m = config.neighbours_max
    n_neigh = int(min(rng.poisson(config.neighbours_mean), m))
    neigh_pos = rng.uniform(-0.95 * half, 0.95 * half, (m, 2))
    neigh_star = rng.random(m) < config.star_fraction
    neigh_re, neigh_n = loguniform(config.neighbour_re, m), rng.uniform(0.5, 4.0, m)
    neigh_q, neigh_phi = rng.uniform(0.1, 0.99, m), rng.uniform(0.0, math.pi, m)
    neigh_mag = uniform(config.neighbour_mag, m)
    neigh_col = np.stack([colours(config.neighbour_colour) for _ in range(m)]) if m else np.zeros((0, nb))
    # observation
    u_noisy, noisy = rng.random(), uniform(config.noisy_factor)
    mask = draw_mask(config, rng)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    # look-alike non-lenses (drawn last, whatever the kind)
    separation = rng.uniform(0.6, 1.6)  # companion or knot ring radius / theta_E
    tangential, companion_q = rng.random() < 0.5, rng.uniform(0.15, 0.5)
    merger_dmag, merger_n, merger_re = rng.uniform(0.0, 1.5), rng.uniform(1.0, 4.0), rng.uniform(0.3, 1.0)
    merger_separation = rng.uniform(0.3, 1.2)
    knot_phase, knot_pitch = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, 0.6)  # pitch 0: a ring
    knot_jitter = rng.normal(0.0, 0.3, k + 1)
    u_seeing = rng.random()
    level = min(int(u_seeing * PSF_LEVELS), PSF_LEVELS - 1)
    seeing = 1.0 + config.psf_jitter * (2.0 * level / (PSF_LEVELS - 1) - 1.0)

    slots = n_slots(config)
    light = np.zeros((slots, 6))
    flux = np.zeros((slots, nb))
    light[0] = (cx, cy, q_light, phi_light, lens_n, lens_re)
    flux[0] = config.flux(lens_mag + lens_col)
    mass_theta = theta_e
    if kind == "field":
        light[0] = (cx, cy, field_light[2], field_light[3], field_light[0], field_light[1])
        flux[0] = config.flux(field_mag + field_col)
        mass_theta = 0.0
    elif kind == "small_mass":
        mass_theta = small_theta
    elif kind in LOOKALIKE_KINDS:
        mass_theta, gamma = 0.0, 0.0
    mass = np.array([cx, cy, q_mass, phi_mass, mass_theta, gamma * math.cos(2 * phi_gamma),
                     gamma * math.sin(2 * phi_gamma)])

    def place_source(radius: float, q: float, phi: float) -> None:
        """The source and its clumps at `radius` from the deflector, in direction src_angle."""
        sx, sy = cx + radius * math.cos(src_angle), cy + radius * math.sin(src_angle)
        total = config.flux(src_mag + src_col)
        light[1] = (sx, sy, q, phi, src_n, src_re)
        flux[1] = total * (1.0 - clump_share[:n_clumps].sum())
        for i in range(n_clumps):
            light[2 + i] = (sx + clump_offset[i, 0], sy + clump_offset[i, 1], 1.0, 0.0, 0.5, clump_re[i])
            flux[2 + i] = total * clump_share[i] * np.power(10.0, -0.4 * clump_col[i])

    if kind == "lens":
        lo, hi = config.source_offset
        place_source(theta_e * math.sqrt(lo**2 + u_radius * (hi**2 - lo**2)), src_q, src_phi)
    elif kind == "offset_source":  # single image: well outside the caustics
        lo = 1.5 * theta_e + 2.0 * src_re
        place_source(lo + u_radius * max(0.0, 0.9 * half - theta_e - lo), src_q, src_phi)
    elif kind == "small_mass":
        place_source(math.sqrt(u_radius) * 1.0, src_q, src_phi)
    elif kind == "companion":  # a blue galaxy beside the deflector, unlensed; half of them tangential
        place_source(min(separation * theta_e, 0.8 * half), companion_q,
                     src_angle + math.pi / 2 if tangential else src_phi)
    elif kind == "merger":  # a second galaxy of the deflector's colour, overlapping it
        mx = cx + merger_separation * theta_e * math.cos(src_angle)
        my = cy + merger_separation * theta_e * math.sin(src_angle)
        light[1] = (mx, my, src_q, src_phi, merger_n, max(lens_re * merger_re, scale))
        flux[1] = config.flux(lens_mag + merger_dmag + lens_col)
    elif kind == "ring":  # star-forming knots on a ring (or a spiral arm) around the galaxy
        total = config.flux(src_mag + src_col)
        for i in range(k + 1):
            angle = knot_phase + 2.0 * math.pi * (i + knot_jitter[i] / 2.0) / (k + 1)
            radius = min(separation * theta_e, 0.6 * half) * (1.0 + knot_pitch * i / (k + 1))  # inside the frame
            light[1 + i] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle), 1.0, 0.0, 0.5,
                            2.0 * clump_re[min(i, k - 1)] if k else src_re)
            flux[1 + i] = total / (k + 1) * np.power(10.0, -0.4 * knot_jitter[i])
    first = 2 + config.clumps_max
    star_re = STAR_RE_PIXELS * scale
    for i in range(n_neigh):
        x, y = neigh_pos[i]
        r = math.hypot(x, y)
        if r < 0.5:  # keep field objects off the deflector's centre
            x, y = (x, y) if r == 0 else (x * 0.5 / r, y * 0.5 / r)
        if neigh_star[i]:
            light[first + i] = (x, y, 1.0, 0.0, 0.5, star_re)
        else:
            light[first + i] = (x, y, neigh_q[i], neigh_phi[i], neigh_n[i], neigh_re[i])
        flux[first + i] = config.flux(neigh_mag[i] + neigh_col[i])
    return Scene(
        image_id=int(image_id), is_lens=is_lens, kind=kind, theta_e=float(mass_theta), mass=mass, light=light,
        flux=flux, noise_factor=float(noisy if u_noisy < config.noisy_fraction else 1.0), mask=mask,
        noise_seed=noise_seed, seeing=seeing,
    )


@dataclass(frozen=True)
class SceneBatch:
    """Parameter tensors of B scenes: mass (B, 7), light (B, slots, 6), flux (B, slots, bands)."""

    mass: torch.Tensor
    light: torch.Tensor
    flux: torch.Tensor


def stack_scenes(scenes: Sequence[Scene]) -> SceneBatch:
    return SceneBatch(
        mass=torch.from_numpy(np.stack([s.mass for s in scenes])),
        light=torch.from_numpy(np.stack([s.light for s in scenes])),
        flux=torch.from_numpy(np.stack([s.flux for s in scenes])),
    )


@contextlib.contextmanager
def render_context() -> Iterator[None]:
    """One thread and denormals flushed: reproducible to the bit, and no slow tiny-number arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


class StrongRenderer:
    """Renders noise-free, PSF-convolved scenes for one configuration; builds grids and PSFs once.

    Surface brightness is sampled at pixel centres everywhere, then at ss x ss sub-pixels in the
    pixels where the centre sample may be off by more than `adaptive_tolerance` noise sigmas
    (estimated from the discrete Laplacian: a pixel's mean differs from its centre by about
    Laplacian / 24), their neighbours, and around every unlensed object's centre. With
    `adaptive_tolerance` 0 every pixel is supersampled, as lenstronomy does.

    Light is evaluated only for the (scene, slot) pairs that are present, all scenes of a batch in
    one call per group (unlensed / lensed), and summed into images with a sparse matrix product.
    """

    def __init__(self, config: StrongSimConfig, device: str | torch.device = "cpu"):
        import caustics

        self.config = config
        self.device = torch.device(device)
        self.dtype = torch.float32
        n, ss, scale = config.image_size, config.supersampling, config.pixel_scale
        axis = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0) * scale
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.x = xx.reshape(1, -1).to(self.device, self.dtype)
        self.y = yy.reshape(1, -1).to(self.device, self.dtype)
        sub = (torch.arange(ss, dtype=torch.float64) - (ss - 1) / 2.0) * scale / ss
        sub_y, sub_x = torch.meshgrid(sub, sub, indexing="ij")
        self.sub_x = sub_x.reshape(1, -1).to(self.device, self.dtype)
        self.sub_y = sub_y.reshape(1, -1).to(self.device, self.dtype)
        self.lensed = torch.from_numpy(lensed_slots(config)).to(self.device)
        self.channels = config.n_bands + 1  # the bands, then the lensed source alone in the reference band
        self.unit = float(config.noise_sigma[0])  # working flux unit: values of order 1, no underflow
        sigma = [s / self.unit for s in config.noise_sigma] + [1.0]
        self.sigma = torch.tensor(sigma, dtype=self.dtype, device=self.device).view(1, -1, 1, 1)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # redshifts are irrelevant: deflections are set by theta_E
            cosmology = caustics.FlatLambdaCDM(name="cosmology")
            sie = caustics.SIE(cosmology=cosmology, name="sie", s=1e-6)  # tiny core: finite at the centre
            shear = caustics.ExternalShear(cosmology=cosmology, name="shear", x0=0.0, y0=0.0)
            self.lens = caustics.SinglePlane(cosmology=cosmology, lenses=[sie, shear], name="lens",
                                             z_l=0.5, z_s=1.5)
        self._k_sersic = caustics.light.func.k_sersic
        self._build_psf()

    # --- physics -------------------------------------------------------------------------------

    def raytrace(self, mass: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source-plane positions (lens equation) of rays through (x, y); mass (K, 7), x and y (K or 1, P)."""
        m = [mass[:, i : i + 1] for i in range(7)]
        m[2] = m[2].clamp(max=1.0 - 1e-4)  # caustics' SIE needs q < 1
        return self.lens.raytrace(x, y, m)

    def _sersic(self, light: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unit-flux elliptical Sersic profiles integrated over a pixel's area: light (K, 6), x, y (K or 1, P)."""
        p = [light[:, i : i + 1] for i in range(6)]
        n, q, re = p[4], p[2], p[5]
        k = self._k_sersic(n)
        # total flux of I_e exp(-k((r/Re)^(1/n) - 1)) over the ellipse r^2 = x'^2 + (y'/q)^2
        total = 2.0 * math.pi * n * q * re**2 * torch.exp(k - 2.0 * n * torch.log(k) + torch.lgamma(2.0 * n))
        return sersic_brightness(p[0], p[1], q, p[3], n, re, self.config.pixel_scale**2 / total, x, y, k)

    def _light(self, batch: SceneBatch, present: torch.Tensor, owner: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor, shared_grid: bool) -> torch.Tensor:
        """Images (K, channels, P) at K point sets (rows of x, y) that belong to scenes `owner`.

        With `shared_grid`, x and y are one (1, P) grid used by every scene. Otherwise each row is
        one pixel's sub-pixels, and objects that cannot reach that pixel by more than a thousandth
        of the tolerance are left out. Work goes in chunks of about CHUNK_POINTS points, so that
        the chains of element-wise operations stay in cache.
        """
        k, points = owner.shape[0], x.shape[1]
        out = torch.zeros((k, self.channels, points), dtype=self.dtype, device=self.device)
        rows, slots = torch.nonzero(present[owner], as_tuple=True)  # (point set, light slot) pairs, by row
        lensed = self.lensed[slots]
        step = max(1, CHUNK_POINTS // points)
        unlensed = torch.nonzero(~lensed).flatten()
        if not shared_grid:
            centre = (points - 1) // 2
            light = batch.light[owner[rows[unlensed]], slots[unlensed]]
            r = rows[unlensed]
            far = torch.hypot(x[r, centre] - light[:, 0], y[r, centre] - light[:, 1])
            reach = self._reach(light, batch.flux[owner[r], slots[unlensed]], far - 0.71 * self.config.pixel_scale)
            unlensed = unlensed[reach]
        for start in range(0, unlensed.numel(), step):
            pairs = unlensed[start : start + step]
            r = rows[pairs]
            px, py = (x, y) if shared_grid else (x[r], y[r])
            self._add(out, r, owner[r], slots[pairs], batch, px, py, is_lensed=False)
        lensed_pairs = torch.nonzero(lensed).flatten()
        if lensed_pairs.numel():
            traced, first = torch.unique_consecutive(rows[lensed_pairs], return_counts=True)
            ends = torch.cumsum(first, 0)
            for start in range(0, traced.numel(), step):
                t = traced[start : start + step]
                lo = int(ends[start - 1]) if start else 0
                hi = int(ends[min(start + step, traced.numel()) - 1])
                pairs = lensed_pairs[lo:hi]
                px, py = (x, y) if shared_grid else (x[t], y[t])
                bx, by = self.raytrace(batch.mass[owner[t]], px, py)
                local = torch.searchsorted(t, rows[pairs])
                r = rows[pairs]
                if not shared_grid:
                    light = batch.light[owner[r], slots[pairs]]
                    near = torch.hypot(bx[local] - light[:, :1], by[local] - light[:, 1:2]).amin(1)
                    keep = self._reach(light, batch.flux[owner[r], slots[pairs]], near)
                    pairs, local, r = pairs[keep], local[keep], r[keep]
                self._add(out, r, owner[r], slots[pairs], batch, bx[local], by[local], is_lensed=True)
        return out

    def _reach(self, light: torch.Tensor, flux: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """Whether objects may add more than 1e-3 x tolerance sigma at `distance` (arcsec) from their centre.

        The elliptical radius is never below the distance, and the profile falls with it.
        """
        n, q, re = light[:, 4], light[:, 2], light[:, 5]
        k = self._k_sersic(n)
        log_total = (math.log(2.0 * math.pi) + torch.log(n * q * re**2) + k - 2.0 * n * torch.log(k)
                     + torch.lgamma(2.0 * n))
        u = torch.exp(torch.log(distance.clamp(min=1e-12) / re) / n)
        log_peak = 2.0 * math.log(self.config.pixel_scale) - log_total + torch.clamp(k - k * u, min=-EXPONENT_FLOOR)
        brightest = (flux / self.sigma.view(-1)[: flux.shape[1]]).amax(1)
        return torch.exp(log_peak) * brightest > 1e-3 * self.config.adaptive_tolerance

    def _add(self, out: torch.Tensor, rows: torch.Tensor, scenes: torch.Tensor, slots: torch.Tensor,
             batch: SceneBatch, x: torch.Tensor, y: torch.Tensor, is_lensed: bool) -> None:
        """Add the light of (scene, slot) pairs, evaluated at x, y (one row per pair, or one shared row),
        to rows `rows` of `out`."""
        step = max(1, CHUNK_POINTS // x.shape[1])
        for start in range(0, rows.numel(), step):
            part = slice(start, start + step)
            px, py = (x, y) if x.shape[0] == 1 else (x[part], y[part])
            profile = self._sersic(batch.light[scenes[part], slots[part]], px, py)
            flux = batch.flux[scenes[part], slots[part]]
            for c in range(self.config.n_bands):
                out[:, c].index_add_(0, rows[part], profile * flux[:, c : c + 1])
            if is_lensed:
                ref = self.config.reference_band
                out[:, -1].index_add_(0, rows[part], profile * flux[:, ref : ref + 1])

    # --- rendering -----------------------------------------------------------------------------

    def render(self, batch: SceneBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise-free scenes (B, bands, H, W) and the lensed source alone in the reference band (B, H, W), flux units."""
        cfg = self.config
        n, ss, ch = cfg.image_size, cfg.supersampling, self.channels
        batch = SceneBatch(batch.mass.to(self.device, self.dtype), batch.light.to(self.device, self.dtype),
                           (batch.flux / self.unit).to(self.device, self.dtype))
        b = batch.mass.shape[0]
        present = batch.flux.abs().sum(-1) > 0
        scenes = torch.arange(b, device=self.device)
        coarse = self._light(batch, present, scenes, self.x, self.y, shared_grid=True).view(b, ch, n, n)
        if ss == 1:
            return self._output(self._convolve_pixels(coarse))
        laplacian = self._laplacian(coarse)
        where = torch.nonzero(self._select(batch, present, laplacian))  # (M, 3): scene, row, column
        fine = torch.empty((where.shape[0], ch, ss * ss), dtype=self.dtype, device=self.device)
        for start in range(0, where.shape[0], FINE_CHUNK):
            part = where[start : start + FINE_CHUNK]
            pix = part[:, 1] * n + part[:, 2]
            fx = self.x[0, pix][:, None] + self.sub_x
            fy = self.y[0, pix][:, None] + self.sub_y
            fine[start : start + FINE_CHUNK] = self._light(batch, present, part[:, 0], fx, fy, shared_grid=False)
        if cfg.psf_supersampled:
            return self._output(self._convolve_supersampled(coarse, where, fine))
        pixel = coarse.add_(laplacian, alpha=1.0 / 24.0)
        pixel.permute(0, 2, 3, 1)[where[:, 0], where[:, 1], where[:, 2]] = fine.mean(-1)
        return self._output(self._convolve_pixels(pixel))

    def convolve_fine(self, fine: torch.Tensor) -> torch.Tensor:
        """PSF of every channel applied to images (B, n ss, n ss) sampled at the ss x ss sub-pixel
        centres (ss = supersampling), binned to pixels: (B, channels, n, n). Binned first where the
        configuration convolves at the pixel scale, as `render` does."""
        cfg = self.config
        n, ss = cfg.image_size, cfg.supersampling
        fine = fine[:, None].expand(-1, self.channels, -1, -1)
        if not cfg.psf_supersampled:
            return self._convolve_pixels(fine.reshape(*fine.shape[:-2], n, ss, n, ss).mean((-3, -1)))
        if self.separable:
            return _separable(fine, self.psf_matrix)
        out = self._fft_convolve(fine)
        return out.reshape(*out.shape[:-2], n, ss, n, ss).mean((-3, -1))

    def _output(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = image.mul_(self.unit)
        nb = self.config.n_bands
        return image[:, :nb], image[:, nb]

    def _laplacian(self, image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
        out = padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1]
        out += padded[..., 1:-1, :-2]
        out += padded[..., 1:-1, 2:]
        return out.sub_(image, alpha=4.0)

    def _select(self, batch: SceneBatch, present: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
        """Pixels to supersample: (B, H, W) bool."""
        cfg = self.config
        n = cfg.image_size
        if cfg.adaptive_tolerance <= 0:
            return torch.ones((laplacian.shape[0], n, n), dtype=torch.bool, device=self.device)
        bands = cfg.n_bands
        limit = 24.0 * cfg.adaptive_tolerance * self.sigma[:, :bands]
        seeds = (laplacian[:, :bands].abs() > limit).any(1)
        # around every unlensed object's centre, where a compact profile may fall between samples
        img, slot = torch.nonzero(present & ~self.lensed, as_tuple=True)
        centre = batch.light[img, slot, :2] / cfg.pixel_scale + (n - 1) / 2.0
        col, row = centre[:, 0].round().long(), centre[:, 1].round().long()
        inside = (row >= 0) & (row < n) & (col >= 0) & (col < n)
        seeds[img[inside], row[inside], col[inside]] = True
        grown = seeds.clone()
        grown[:, 1:] |= seeds[:, :-1]
        grown[:, :-1] |= seeds[:, 1:]
        out = grown.clone()
        out[:, :, 1:] |= grown[:, :, :-1]
        out[:, :, :-1] |= grown[:, :, 1:]
        return out

    # --- PSF -----------------------------------------------------------------------------------

    def _build_psf(self) -> None:
        """PSF operators per channel (the last channel, the source alone, uses the reference band's PSF)."""
        cfg = self.config
        n = cfg.image_size
        ss = cfg.supersampling if cfg.psf_supersampled else 1
        bands = list(range(cfg.n_bands)) + [cfg.reference_band]
        as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)  # noqa: E731
        self.separable = cfg.psf_profile == "gaussian"
        if self.separable:
            # blur-and-bin matrices: image_out = G @ image_ss @ G^T
            self.psf_matrix = as_tensor([psf_matrix(cfg, band, ss) for band in bands])
            self.psf_rows = self.psf_matrix.permute(2, 0, 1).contiguous()  # (n ss, channels, n): gather rows
        else:
            scale = cfg.pixel_scale / ss
            radius = max(int(math.ceil(3.0 * fwhm / scale)) for fwhm in cfg.psf_fwhm)
            kernels = as_tensor([psf_image(cfg, band, scale, radius) for band in bands])
            self.fft_size = _fast_size(n * ss + 2 * radius)
            self.psf_crop = radius
            self.psf_fft = torch.fft.rfft2(kernels, s=(self.fft_size, self.fft_size))
        if ss > 1:
            self.upsample = as_tensor(cubic_upsampling(n, ss))  # (n ss, n)
            if self.separable:
                self.psf_smooth = self.psf_matrix @ self.upsample  # (channels, n, n)

    def _convolve_pixels(self, image: torch.Tensor) -> torch.Tensor:
        if self.separable:
            return _separable(image, self.psf_matrix)
        return self._fft_convolve(image)

    def _fft_convolve(self, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[-1]
        spectrum = torch.fft.rfft2(image, s=(self.fft_size, self.fft_size)) * self.psf_fft
        full = torch.fft.irfft2(spectrum, s=(self.fft_size, self.fft_size))
        c = self.psf_crop
        return full[..., c : c + size, c : c + size]

    def _convolve_supersampled(self, coarse: torch.Tensor, where: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """PSF at the sub-pixel scale, then binned: the smooth part (cubic interpolation of the centre
        samples) through precomputed matrices, the supersampled pixels as corrections on their rows
        and columns only."""
        cfg = self.config
        n, ss, ch = cfg.image_size, cfg.supersampling, self.channels
        sub = torch.arange(ss, device=self.device)
        if not self.separable:
            up = self.upsample @ coarse @ self.upsample.T
            up.view(-1, ch, n, ss, n, ss).permute(0, 2, 4, 1, 3, 5)[where[:, 0], where[:, 1], where[:, 2]] = \
                fine.view(-1, ch, ss, ss)
            out = self._fft_convolve(up)
            return out.reshape(*out.shape[:-2], n, ss, n, ss).mean((-3, -1))
        out = _separable(coarse, self.psf_smooth)
        fine = fine.view(-1, ch, ss, ss)
        bounds = torch.searchsorted(where[:, 0].contiguous(), torch.arange(coarse.shape[0] + 1, device=self.device))
        for scene in range(coarse.shape[0]):
            lo, hi = int(bounds[scene]), int(bounds[scene + 1])
            if lo == hi:
                continue
            rows, row_at = torch.unique(where[lo:hi, 1], return_inverse=True)
            cols, col_at = torch.unique(where[lo:hi, 2], return_inverse=True)
            sub_rows = (rows[:, None] * ss + sub).flatten()
            sub_cols = (cols[:, None] * ss + sub).flatten()
            smooth = self.upsample[sub_rows] @ coarse[scene] @ self.upsample[sub_cols].T  # (ch, R ss, C ss)
            box = smooth.view(ch, rows.numel(), ss, cols.numel(), ss).permute(1, 3, 0, 2, 4)
            correction = torch.zeros_like(box)
            correction[row_at, col_at] = fine[lo:hi] - box[row_at, col_at]
            correction = correction.permute(2, 0, 3, 1, 4).reshape(ch, rows.numel() * ss, cols.numel() * ss)
            out[scene] += (self.psf_rows[sub_rows].permute(1, 2, 0) @ correction
                           @ self.psf_rows[sub_cols].transpose(0, 1))
        return out


def _separable(image: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """M_c @ image[:, c] @ M_c.T for every channel c, as two large matrix products per channel."""
    out = []
    for c in range(image.shape[1]):
        m = matrices[c]
        right = image[:, c] @ m.T  # (B, rows, n)
        out.append((right.transpose(1, 2) @ m.T).transpose(1, 2))
    return torch.stack(out, 1)


def sersic_brightness(x0: torch.Tensor, y0: torch.Tensor, q: torch.Tensor, phi: torch.Tensor, n: torch.Tensor,
                      re: torch.Tensor, ie: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      k: torch.Tensor) -> torch.Tensor:
    """caustics' elliptical Sersic (caustics.light.func.brightness_sersic, same coordinates and k) with
    the exponent floored at -EXPONENT_FLOOR.

    torch's exp is 10-30 times slower on arguments that underflow float32, and compact profiles
    put most of the image there; the floor changes values by less than 1e-34 of I_e. The power
    (r/Re)^(1/n) is taken as exp(log(r^2/Re^2) / 2n): no square root, and a cheaper, reproducible
    operation than a tensor power.
    """
    xr, yr = translate_rotate(x, y, x0, y0, phi)
    ex, ey = to_elliptical(xr, yr, q)
    scaled = torch.exp(torch.log((ex * ex + ey * ey) / (re * re)) * (0.5 / n))
    return ie * torch.exp(torch.clamp(k - k * scaled, min=-EXPONENT_FLOOR))


def cubic_upsampling(n: int, ss: int) -> np.ndarray:
    """(n ss, n) matrix: values at the ss x ss sub-pixel centres from pixel-centre samples.

    Keys' cubic convolution (a = -0.5, exact for quadratics), edges continued by repetition.
    """
    a = -0.5

    def w(t: np.ndarray) -> np.ndarray:
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    matrix = np.zeros((n * ss, n))
    for u in range(n * ss):
        pos = u // ss + ((u % ss) - (ss - 1) / 2.0) / ss
        base = math.floor(pos)
        for j in range(base - 1, base + 3):
            matrix[u, min(max(j, 0), n - 1)] += w(np.array(pos - j))
    return matrix


def _fast_size(minimum: int) -> int:
    """Smallest 2^a 3^b 5^c at least `minimum` (quick FFT lengths)."""
    best = 2 ** math.ceil(math.log2(minimum))
    for a in range(0, best.bit_length()):
        for b3 in range(0, 12):
            for c5 in range(0, 8):
                value = 2**a * 3**b3 * 5**c5
                if minimum <= value < best:
                    best = value
    return best


def lenstronomy_kwargs(config: StrongSimConfig, scene: Scene, band: int = 0) -> dict[str, list]:
    """One band of `scene` in lenstronomy's terms (SIE + SHEAR; SERSIC_ELLIPSE lights), for cross-checks.

    Conventions translated: lenstronomy's ellipticity e = (1 - q) / (1 + q) (cos 2 phi, sin 2 phi);
    its Sersic radius is along the intermediate axis (R = sqrt(q) x major-axis radius); its Sersic
    constant is k = 1.9992 n - 0.3271 where caustics uses Ciotti & Bertin's series, so radius and
    amplitude are rescaled to give the same profile exactly; its `amp` is surface brightness per
    arcsec^2 at R_sersic. The SIE's theta_E has the same meaning in both.
    """
    from caustics.light.func import k_sersic

    def ellipticity(q: float, phi: float) -> tuple[float, float]:
        c = (1.0 - q) / (1.0 + q)
        return c * math.cos(2.0 * phi), c * math.sin(2.0 * phi)

    x0, y0, q, phi, theta_e, g1, g2 = (float(v) for v in scene.mass)
    e1, e2 = ellipticity(min(q, 1.0 - 1e-4), phi)
    out: dict[str, list] = {
        "lens_model_list": ["SIE", "SHEAR"],
        "kwargs_lens": [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=x0, center_y=y0),
                        dict(gamma1=g1, gamma2=g2, ra_0=0.0, dec_0=0.0)],
        "source_light_model_list": [], "kwargs_source": [],
        "lens_light_model_list": [], "kwargs_lens_light": [],
    }
    lensed = lensed_slots(config)
    for slot in range(scene.light.shape[0]):
        flux = float(scene.flux[slot, band])
        if flux == 0:
            continue
        x0, y0, q, phi, n, re = (float(v) for v in scene.light[slot])
        k_c = float(k_sersic(torch.tensor(n, dtype=torch.float64)))
        k_l = 1.9992 * n - 0.3271
        total = 2.0 * math.pi * n * q * re**2 * math.exp(k_c - 2.0 * n * math.log(k_c) + math.lgamma(2.0 * n))
        e1, e2 = ellipticity(q, phi)
        kwargs = dict(amp=flux / total * math.exp(k_c - k_l), R_sersic=math.sqrt(q) * re * (k_l / k_c) ** n,
                      n_sersic=n, e1=e1, e2=e2, center_x=x0, center_y=y0)
        key = "source" if lensed[slot] else "lens_light"
        out[f"{key}_light_model_list" if key == "source" else "lens_light_model_list"].append("SERSIC_ELLIPSE")
        out["kwargs_source" if key == "source" else "kwargs_lens_light"].append(kwargs)
    return out
