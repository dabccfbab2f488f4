"""DeepCache-style feature reuse for a diffusers ``UNet2DConditionModel`` (Ma et al., 2023).

Every ``interval``-th UNet call runs the whole network and remembers each layer's output. On the calls
in between only the *shallow branch* runs: ``conv_in``, the first ``branch`` down layers, and the up
layers that consume those skip connections; every deeper layer (and the mid block) returns the output
it had on the last full step. The UNet's own ``forward`` is untouched, so this works for any pipeline
that calls the UNet (txt2img, img2img, inpaint, ControlNet ...).

Branch numbering follows the UNet's skip connections: skip 0 is ``conv_in``'s output, then one per
down resnet (with its attention) and one per downsampler, in order. ``branch=b`` recomputes skips
``0..b`` on partial steps; ``branch=0`` is the cheapest (only ``conv_in`` and the last up layer run).

A new generation is detected when the timestep rises (or the latent shape changes) and always starts
with a full step; :meth:`DeepCache.reset` forces that too.

The maintained-package route was checked: PyPI ``DeepCache`` 0.1.1 binds to one pipeline's scheduler
(it looks each timestep up in ``pipe.scheduler.timesteps``), which breaks with our shared UNet across
txt2img/img2img/inpaint and with samplers that repeat timesteps; hence this UNet-level version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported where it runs: importing this module (the CLI, the first page) stays light
    import torch

ATTR = "_studio_deepcache"  # the installed DeepCache lives on the UNet under this name


class _Layer:
    """One wrapped sub-module: runs or returns its cached output, as the step decides."""

    def __init__(self, owner: "DeepCache", module: torch.nn.Module, skip_index: int | None):
        self.owner = owner
        self.module = module
        self.skip_index = skip_index  # None: the mid block (always cached on partial steps)
        self.original = module.__dict__.get("forward")  # an instance-level forward someone set, or None
        self.cached: Any = None
        self.compiled: Callable | None = None  # torch.compile of this layer (cache+compile)
        self.calls = 0  # real computations (for tests and the benchmark)

    def skipped(self) -> bool:
        if self.owner.full_step or self.cached is None:
            return False
        return self.skip_index is None or self.skip_index > self.owner.branch

    def install(self) -> None:
        self.plain: Callable = self.original or type(self.module).forward.__get__(self.module)

        def forward(*args, **kwargs):
            if self.skipped():
                return self.cached
            out = (self.compiled or self.plain)(*args, **kwargs)
            self.calls += 1
            self.cached = out if self.owner.full_step else self.cached
            return out

        self.module.forward = forward

    def remove(self) -> None:
        if self.original is not None:
            self.module.forward = self.original
        else:
            self.module.__dict__.pop("forward", None)
        self.cached = None


def _pairs(block: torch.nn.Module) -> list[torch.nn.Module]:
    """A block's resnets with their attentions (same index), in call order."""
    resnets = list(getattr(block, "resnets", None) or [])
    attentions = list(getattr(block, "attentions", None) or [])
    return [(r, attentions[i] if i < len(attentions) else None) for i, r in enumerate(resnets)]


class DeepCache:
    """Install with :func:`enable_deepcache`; one per UNet."""

    def __init__(self, unet: torch.nn.Module, interval: int = 3, branch: int = 0):
        check_params(unet, interval, branch)
        self.unet = unet
        self.interval = int(interval)
        self.branch = int(branch)
        self.layers: list[_Layer] = []
        self.step = -1
        self.full_step = True
        self.full_steps = 0
        self.partial_steps = 0
        self._last: tuple | None = None
        self._hook = None
        self.compile_options: dict | None = None

    # ---------------------------------------------------------------- layout
    def _collect(self) -> list[_Layer]:
        unet = self.unet
        layers: list[_Layer] = []
        skip = 0  # conv_in's output is skip 0
        for block in unet.down_blocks:
            for resnet, attention in _pairs(block):
                skip += 1
                layers += [_Layer(self, m, skip) for m in (resnet, attention) if m is not None]
            for down in getattr(block, "downsamplers", None) or []:
                skip += 1
                layers.append(_Layer(self, down, skip))
        if unet.mid_block is not None:
            layers.append(_Layer(self, unet.mid_block, None))
        consumed = skip  # up layers pop the skips from the deepest back to conv_in's
        for block in unet.up_blocks:
            block_min = consumed
            for resnet, attention in _pairs(block):
                layers += [_Layer(self, m, consumed) for m in (resnet, attention) if m is not None]
                block_min = consumed
                consumed -= 1
            for up in getattr(block, "upsamplers", None) or []:
                layers.append(_Layer(self, up, block_min))  # feeds the next block: skipped with its own block
        return layers

    @staticmethod
    def skip_count(unet: torch.nn.Module) -> int:
        """Number of skip connections after conv_in's (the largest meaningful branch + 1)."""
        n = 0
        for block in unet.down_blocks:
            n += len(getattr(block, "resnets", None) or []) + len(getattr(block, "downsamplers", None) or [])
        return n

    # ---------------------------------------------------------------- lifecycle
    def install(self) -> None:
        self.layers = self._collect()
        for layer in self.layers:
            layer.install()
        self._hook = self.unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)
        setattr(self.unet, ATTR, self)

    def remove(self) -> None:
        for layer in self.layers:
            layer.remove()
        self.layers = []
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if getattr(self.unet, ATTR, None) is self:
            delattr(self.unet, ATTR)

    def set_compile(self, options: dict | None) -> None:
        """Compile every wrapped layer with ``torch.compile(**options)`` (None: run them eagerly)."""
        import torch

        self.compile_options = options
        if options is not None:
            _allow_recompiles(self.layers)
        for layer in self.layers:
            layer.compiled = torch.compile(layer.plain, **options) if options is not None else None

    def reset(self) -> None:
        """The next UNet call is a full step (a new generation)."""
        self._last = None
        for layer in self.layers:
            layer.cached = None

    def calls(self) -> dict[str, int]:
        return {"full": self.full_steps, "partial": self.partial_steps}

    # ---------------------------------------------------------------- per call
    def _before_unet(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
        t = float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else float(timestep)  # tensor or number
        key = (tuple(sample.shape), sample.dtype, sample.device)
        if self._last is None or key != self._last[0] or t > self._last[1]:
            self.step = 0  # a new generation (timesteps only fall within one)
        else:
            self.step += 1
        self._last = (key, t)
        self.full_step = self.step % self.interval == 0
        if self.full_step:
            self.full_steps += 1
        else:
            self.partial_steps += 1
        return None


def _allow_recompiles(layers: list[_Layer]) -> None:
    """Let dynamo keep one graph per wrapped layer.

    Dynamo caches compiled graphs per code object: all of a UNet's resnets share
    ``ResnetBlock2D.forward``, and each instance (its own shapes and, with freezing, its own constant
    weights) needs a graph of its own. Past ``recompile_limit`` (8 by default; an SD1.5 UNet has 22
    resnets) dynamo silently runs the rest eagerly, so the limit is raised to the largest number of
    layers sharing one forward (with room for a second image size)."""
    import torch._dynamo.config as dynamo_config

    per_code: dict[type, int] = {}
    for layer in layers:
        per_code[type(layer.module)] = per_code.get(type(layer.module), 0) + 1
    need = 2 * max(per_code.values(), default=0) + 8
    if dynamo_config.recompile_limit < need:
        dynamo_config.recompile_limit = need
    if dynamo_config.accumulated_recompile_limit < 4 * need:
        dynamo_config.accumulated_recompile_limit = 4 * need


def check_params(unet: torch.nn.Module | None, interval: Any, branch: Any) -> None:
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"cache interval must be an integer >= 1, got {interval!r}")
    if isinstance(branch, bool) or not isinstance(branch, int) or branch < 0:
        raise ValueError(f"cache branch must be an integer >= 0, got {branch!r}")
    if unet is not None and branch >= DeepCache.skip_count(unet):
        raise ValueError(f"cache branch must be below {DeepCache.skip_count(unet)} for this UNet, got {branch}")


def enable_deepcache(unet: torch.nn.Module, interval: int = 3, branch: int = 0) -> DeepCache:
    """Install (or re-tune) DeepCache on ``unet``; returns the installed instance."""
    current = getattr(unet, ATTR, None)
    if current is not None:
        check_params(unet, interval, branch)
        current.interval, current.branch = int(interval), int(branch)
        current.reset()
        return current
    cache = DeepCache(unet, interval, branch)
    cache.install()
    return cache


def disable_deepcache(unet: torch.nn.Module) -> None:
    current = getattr(unet, ATTR, None)
    if current is not None:
        current.remove()


def installed(unet: torch.nn.Module) -> DeepCache | None:
    return getattr(unet, ATTR, None)
