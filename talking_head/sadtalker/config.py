"""Network widths for the SadTalker engine.

The defaults are the official values (the ones the released checkpoints were trained with);
:meth:`SadTalkerConfig.tiny` shrinks every width so tests and CPU benchmarks can run the
same code in milliseconds. Only the default widths can load the official files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Domain constants (SadTalker facts, section 1).
FPS = 25                      # video frame rate the audio windows are cut for
NUM_EXP = 64                  # 3DMM expression coefficients
NUM_POSE = 6                  # angles (3, radians) + translation (3)
NUM_CROP = 3                  # crop parameters (s, tx, ty) used by the 73-dim mapping
NUM_KP = 15                   # canonical 3-D keypoints of the renderer
NUM_POSE_STYLES = 46          # rows of the pose class-bias table; valid pose_style 0..45
SEMANTIC_RADIUS = 13          # MappingNet window = 2 * 13 + 1 = 27 frames
MEL_BINS, MEL_STEP = 80, 16   # one audio window (1, 80, 16)


@dataclass(frozen=True)
class AudioEncoderConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)  # Wav2Lip audio encoder stage widths


@dataclass(frozen=True)
class ExpNetConfig:
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)


@dataclass(frozen=True)
class PoseVAEConfig:
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    filters: tuple[int, int, int, int] = (32, 64, 128, 256)  # ResUNet widths
    latent: int = 64              # z size (= class-bias row size)
    seq_len: int = 32             # frames per VAE window
    hidden: int = 128             # MLP hidden size (encoder and decoder)
    audio_out: int = 6            # per-frame audio projection
    num_classes: int = NUM_POSE_STYLES
    disc_channels: tuple[int, int, int] = (256, 512, 1024)  # unused discriminator widths


@dataclass(frozen=True)
class MappingConfig:
    descriptor: int = 1024        # Conv1d width
    layers: int = 3               # dilated residual convs
    num_bins: int = 66            # head-pose bins (3 degrees each, from -99)
    num_kp: int = NUM_KP


@dataclass(frozen=True)
class KPDetectorConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16       # conv output 16384 = 1024 x 16 reshaped to a volume
    num_kp: int = NUM_KP
    temperature: float = 0.1
    scale_factor: float = 0.25    # input is low-passed and downscaled x0.25

    @property
    def reshape_channel(self) -> int:
        return min(self.max_features, self.block_expansion * 2 ** self.num_blocks) * self.reshape_depth


@dataclass(frozen=True)
class GeneratorConfig:
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_depth: int = 16       # 512 = 32 channels x 16 depth
    num_resblocks: int = 6
    num_kp: int = NUM_KP
    dm_block_expansion: int = 32  # dense-motion hourglass
    dm_max_features: int = 1024
    dm_num_blocks: int = 5
    dm_compress: int = 4
    spade_hidden: int = 128
    decoder_out: int = 64         # channels of the last SPADE block
    num_middle: int = 6           # 512-channel SPADE resblocks

    @property
    def reshape_channel(self) -> int:
        return self.max_features // self.reshape_depth


@dataclass(frozen=True)
class Face3DConfig:
    base_width: int = 64
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)  # ResNet-50


@dataclass(frozen=True)
class SadTalkerConfig:
    """All network widths. Defaults = official SadTalker V0.0.2."""

    expnet: ExpNetConfig = field(default_factory=ExpNetConfig)
    posevae: PoseVAEConfig = field(default_factory=PoseVAEConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    kp: KPDetectorConfig = field(default_factory=KPDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    face3d: Face3DConfig = field(default_factory=Face3DConfig)

    @property
    def is_official(self) -> bool:
        return self == SadTalkerConfig()

    @staticmethod
    def tiny() -> "SadTalkerConfig":
        """Same topology, tiny widths (tests, CPU benchmarks). Cannot load official weights."""
        audio = AudioEncoderConfig(channels=(4, 4, 8, 8, 16))
        return SadTalkerConfig(
            expnet=ExpNetConfig(audio=audio),
            posevae=PoseVAEConfig(audio=audio, filters=(4, 4, 8, 8), hidden=16, disc_channels=(8, 8, 8)),
            mapping=replace(MappingConfig(), descriptor=32),
            kp=replace(KPDetectorConfig(), block_expansion=4, max_features=32, reshape_depth=2),
            generator=replace(GeneratorConfig(), block_expansion=8, max_features=32, reshape_depth=2, dm_compress=1,
                              num_resblocks=2, dm_block_expansion=4, dm_max_features=32,
                              spade_hidden=8, decoder_out=8, num_middle=2),
            face3d=Face3DConfig(base_width=4, layers=(1, 1, 1, 1)),
        )
