"""The UI's languages: English and 简体中文, through Gradio's own i18n (``gr.I18n``).

All strings live here, keyed by their English text, so a new tab only adds its strings to ``ZH_CN``
(a missing key shows the English text). ``translate_blocks`` runs once after the UI is built and turns
every label, help text (``info``), placeholder, button text and radio/dropdown choice label that has a
translation into Gradio i18n data; Gradio's frontend then shows the browser's language. The language
switch (English / 简体中文) stores the choice in the browser and reloads; ``LANGUAGE_HEAD`` makes
the page report that language to Gradio's frontend before it starts.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

LANGUAGES = {"English": "en", "简体中文": "zh-CN"}
STORAGE_KEY = "sd-studio-language"
LANGUAGE_COOKIE = "sd_studio_language"  # the page's language, for messages the server writes (errors)

ZH_CN: dict[str, str] = {
    # model bar and tabs
    "Stable Diffusion checkpoint": "Stable Diffusion 模型", "Refresh": "刷新", "txt2img": "文生图",
    "img2img": "图生图", "Inpaint": "局部重绘", "Talking head": "数字人说话", "PNG Info": "PNG 信息",
    "Settings": "设置", "Language": "语言",
    # prompt row and generation parameters
    "Prompt": "提示词", "a large red circle on the left, blue background": "左边一个大红圆，蓝色背景",
    "Negative prompt": "反向提示词", "Generate": "生成", "Interrupt": "中断", "Styles": "预设样式",
    "from styles.csv; applied when generating": "来自 styles.csv；生成时应用", "Apply to prompt": "写入提示词",
    "Reload styles": "重新载入样式", "Save the prompts as a style": "把当前提示词存为样式", "Style name": "样式名称",
    "💾 Save style": "💾 保存样式", "Advanced": "高级选项", "Sampling method": "采样方法",
    "Sampling steps": "采样步数", "CFG scale": "提示词引导系数 (CFG)", "Width": "宽度", "Height": "高度",
    "Seed (-1 = random)": "随机种子（-1 = 随机）", "Extra": "更多", "Variation seed": "差异随机种子",
    "Variation strength": "差异强度", "Resize seed from width": "从宽度调整种子",
    "Resize seed from height": "从高度调整种子", "Batch count": "生成批次", "Batch size": "每批数量",
    "Script": "脚本", "None": "无", "X/Y/Z plot": "X/Y/Z 图表", "X type": "X 轴类型", "X values": "X 轴值",
    "Y type": "Y 轴类型", "Y values": "Y 轴值", "Z type": "Z 轴类型", "Z values": "Z 轴值",
    "e.g. 1-5, or 7, 9, or Euler a, DDIM": "例如 1-5，或 7, 9，或 Euler a, DDIM", "Draw legend": "显示图例",
    "Include sub images": "包含单张图片", "Keep -1 for seeds": "种子保持 -1",
    "Nothing": "无", "Var. seed": "差异种子", "Var. strength": "差异强度", "Steps": "步数",
    "CFG Scale": "CFG 系数", "Prompt S/R": "提示词搜索/替换", "Sampler": "采样器", "Checkpoint name": "模型名称",
    "Denoising": "重绘幅度", "VAE": "VAE", "Hires steps": "高分辨率步数", "Hires sampler": "高分辨率采样器",
    "Hires upscaler": "高分辨率放大算法", "Clip skip": "跳过 CLIP 层数", "Face restore": "面部修复",
    "Token merging ratio": "Token 合并比例", "Size": "尺寸",
    # results
    "Results": "生成结果", "Send to img2img": "发送到图生图", "Send to inpaint": "发送到局部重绘",
    "Send to talking head": "发送到数字人说话", "Send to txt2img": "发送到文生图", "Live preview": "实时预览",
    "Generation info": "生成信息",
    # img2img / inpaint
    "Input image": "输入图片", "Resize mode": "缩放模式", "Just resize": "仅调整大小", "Crop and resize": "裁剪后缩放",
    "Resize and fill": "缩放后填充", "Just resize (latent upscale)": "仅调整大小（潜空间放大）",
    "Denoising strength": "重绘幅度", "0 returns the input, 1 ignores it": "0 返回原图，1 完全不参考原图",
    "Image — paint the area to repaint": "图片 — 涂抹要重绘的区域", "Or upload a mask (white = repaint)":
        "或上传蒙版（白色 = 重绘）", "Mask blur": "蒙版模糊", "Mask mode": "蒙版模式", "Inpaint masked": "重绘蒙版内容",
    "Inpaint not masked": "重绘非蒙版内容", "Masked content": "蒙版区域内容处理",
    "latent noise: repaint from scratch; original: start from the image (keep its layout); fill: start from the "
    "surrounding colours": "潜空间噪声：从头重绘；原图：从原图出发（保留布局）；填充：从周围的颜色出发",
    "fill": "填充", "original": "原图", "latent noise": "潜空间噪声", "Inpaint area": "重绘区域",
    "Whole picture": "整张图片", "Only masked": "仅蒙版区域", "Only masked padding, pixels": "仅蒙版区域的边缘预留像素",
    # talking head
    "Source image": "人像图片", "Input audio (upload or record)": "输入音频（上传或录音）",
    "Reference videos (optional)": "参考视频（可选）", "Eye blinks from this video": "从此视频获取眨眼",
    "Head motion from this video": "从此视频获取头部动作", "Batch (several portraits and/or speech files)":
        "批量（多张人像和/或多段语音）", "Portraits": "人像", "Speech files": "语音文件", "Pairing": "配对方式",
    "product: every portrait speaks every file; zip: the n-th with the n-th. The single image/audio above join "
    "the lists.": "全组合：每张人像说每段语音；一一对应：第 n 张配第 n 段。上方的单张图片/音频也加入列表。",
    "product": "全组合", "zip": "一一对应", "Pose style": "姿态风格", "Face model resolution": "面部模型分辨率",
    "Preprocess": "预处理", "crop": "裁剪", "extcrop": "扩展裁剪", "resize": "缩放", "full": "完整", "extfull": "扩展完整",
    "Still mode (fewer head motion, works with preprocess full)": "静止模式（更少头部动作，配合“完整”预处理）",
    "Eye blink": "眨眼", "Expression scale": "表情强度", "GFPGAN as face enhancer": "使用 GFPGAN 增强面部",
    "Engine": "引擎", "auto uses SadTalker when its checkpoints are in checkpoints/":
        "auto：checkpoints/ 中有 SadTalker 权重时使用 SadTalker", "auto": "自动", "default": "默认",
    "Seed": "随机种子", "Generated video": "生成的视频", "Download": "下载",
    # PNG Info
    "Source PNG": "源 PNG 图片", "Parameters": "生成参数", "Parsed": "解析结果",
    # settings
    "Device (auto: CUDA > MPS > CPU)": "设备（auto：CUDA > MPS > CPU）", "Precision": "精度", "Attention": "注意力实现",
    "Autocast": "自动混合精度", "TF32 (Ampere+ GPUs)": "TF32（Ampere 及更新的显卡）", "VAE slicing": "VAE 切片",
    "VAE tiling (large images)": "VAE 分块（大图）", "Memory (CPU offload)": "显存（CPU 卸载）", "normal": "正常",
    "model-offload": "模型卸载", "sequential-offload": "逐层卸载", "CPU threads (0 = default)": "CPU 线程数（0 = 默认）",
    "Apply settings": "应用设置", "Doctor: this machine and the recommended settings": "体检：本机状况与推荐设置",
    "Check this machine": "检查本机", "Apply recommended settings": "应用推荐设置",
    # hires fix, Extras, History, text to speech (other tabs' strings)
    "Hires. fix": "高分辨率修复", "Enable hires fix": "启用高分辨率修复",
    "first pass at Width x Height, upscale, then an img2img pass": "先按宽 x 高生成，放大，再做一次图生图",
    "Upscaler": "放大算法", "Hires steps (0 = same)": "高分辨率步数（0 = 相同）", "Upscale by": "放大倍数",
    "Resize width to": "宽度调整为", "Resize height to": "高度调整为", "Hires sampling method": "高分辨率采样方法",
    "Hires prompt (empty = same)": "高分辨率提示词（留空 = 相同）",
    "Hires negative prompt (empty = same)": "高分辨率反向提示词（留空 = 相同）",
    "Restore faces (GFPGAN)": "面部修复（GFPGAN）", "Send to Extras": "发送到附加功能", "Extras": "附加功能",
    "Input": "输入", "Single image": "单张图片", "Batch process": "批量处理", "Batch from directory": "从文件夹批量处理",
    "Source": "来源图片", "Input directory": "输入文件夹", "Resize": "缩放", "Scale by": "按倍数缩放",
    "Scale to": "缩放到尺寸", "Crop to fit": "裁剪以适应", "Upscaler 1": "放大算法 1", "Upscaler 2": "放大算法 2",
    "Upscaler 2 visibility": "放大算法 2 可见度", "GFPGAN visibility": "GFPGAN 可见度",
    "Upscale before restoring faces": "先放大再修复面部", "Result": "结果", "Info": "信息",
    "Or type the speech (text to speech, offline)": "或输入要说的话（离线语音合成）",
    "Text to speak (instead of the audio)": "要朗读的文字（代替音频）", "Voice": "声音",
    "Speed (words per minute)": "语速（每分钟词数）", "Pitch": "音调", "Speech (WAV, for typed text)": "语音（WAV，来自输入的文字）",
    "History": "历史记录", "Kind": "类型", "From (YYYY-MM-DD)": "开始日期（YYYY-MM-DD）",
    "To (YYYY-MM-DD)": "结束日期（YYYY-MM-DD）", "Selected": "已选中", "Selected video": "选中的视频", "Jobs": "任务",
    # messages
    "this file is not an image. Upload a PNG, JPEG or WebP picture.": "此文件不是图片。请上传 PNG、JPEG 或 WebP 图片。",
    "this file is not an audio file. Upload a WAV, MP3, M4A, OGG or FLAC file.":
        "此文件不是音频。请上传 WAV、MP3、M4A、OGG 或 FLAC 文件。",
}

# Request field names, as the core's errors name them
ZH_FIELDS: dict[str, str] = {
    "width": "宽度", "height": "高度", "steps": "采样步数", "cfg_scale": "CFG 系数", "batch_size": "每批数量",
    "batch_count": "生成批次", "seed": "随机种子", "subseed": "差异随机种子", "subseed_strength": "差异强度",
    "denoising_strength": "重绘幅度", "mask_blur": "蒙版模糊", "inpaint_full_res_padding": "蒙版边缘预留像素",
    "clip_skip": "跳过 CLIP 层数", "seed_resize_from_w": "从宽度调整种子", "seed_resize_from_h": "从高度调整种子",
    "hr_scale": "放大倍数", "hr_second_pass_steps": "高分辨率步数", "image": "图片", "mask": "蒙版",
}


def _field(name: str) -> str:
    return f"{ZH_FIELDS[name]}（{name}）" if name in ZH_FIELDS else name


# The core's common errors (ValueError text) -> Chinese; groups are kept ({0}, {1}, ...; field names translated)
ZH_ERRORS: list[tuple[re.Pattern, str]] = [(re.compile(p, re.S), zh) for p, zh in (
    (r"(\w+) must be between (\S+) and (\S+), got (.+)", "{0} 必须介于 {1} 和 {2} 之间，当前为 {3}"),
    (r"(\w+) must be a multiple of 8, got (.+)", "{0} 必须是 8 的倍数，当前为 {1}"),
    (r"(\w+) must be an integer, got (.+)", "{0} 必须是整数，当前为 {1}"),
    (r"(\w+) must be 0 \(off\) or a multiple of 8, got (.+)", "{0} 必须为 0（关闭）或 8 的倍数，当前为 {1}"),
    (r"Unknown sampler (.+?); valid samplers: (.+)", "未知的采样器 {0}；可用的采样器：{1}"),
    (r"Unknown model (.+?); available: (.+)", "未知的模型 {0}；可用的模型：{1}"),
    (r"Unknown VAE (.+?): put it in models/VAE; available: (.+)", "未知的 VAE {0}：请放到 models/VAE；可用：{1}"),
    (r"Unknown LoRA (.+?): no such file in (.+?) \(models/Lora\); available: (.+)",
     "未知的 LoRA {0}：{1}（models/Lora）中没有这个文件；可用：{2}"),
    (r"mask is empty \(no white pixels\): nothing to inpaint", "蒙版为空（没有白色像素）：没有需要重绘的区域"),
    (r"(\w+) is (\d+)x(\d+) = (\d+) pixels, above the limit of (\d+)", "{0} 为 {1}x{2} = {3} 像素，超过上限 {4}"),
    (r"(\w+) is required", "需要提供{0}"),
    (r"prompt and negative_prompt must be strings", "提示词和反向提示词必须是文本"),
    (r"Nothing to send yet: generate or upload an image first", "还没有可发送的图片：请先生成或上传一张图片"),
    (r"hires size (\d+x\d+) exceeds the largest side (\d+)", "高分辨率尺寸 {0} 超过最大边长 {1}"),
    (r"x/y/z plot: the (.+?) axis needs hires fix turned on", "X/Y/Z 图表：{0} 轴需要开启高分辨率修复"),
    (r"x/y/z plot: (.+)", "X/Y/Z 图表：{0}"),
)]


def translate_error(message: str, lang: str | None) -> str:
    """An error the core raised (English) in the user's language ``lang`` ("zh-CN", "en", None = English).
    Known sentences are translated with their values kept; unknown ones stay English."""
    if not lang or not lang.lower().startswith("zh"):
        return message
    for pattern, zh in ZH_ERRORS:
        if m := pattern.fullmatch(message.strip()):
            return zh.format(*(_field(g) for g in m.groups()))
    return message


def request_language(request: Any) -> str | None:
    """The language of the page that sent ``request`` (a gr.Request): the switch's cookie, else the browser's."""
    if request is None:
        return None
    cookies = getattr(request, "cookies", None) or {}
    lang = cookies.get(LANGUAGE_COOKIE) if hasattr(cookies, "get") else None
    if lang:
        return lang
    headers = getattr(request, "headers", None) or {}
    accept = headers.get("accept-language", "") if hasattr(headers, "get") else ""
    return accept.split(",")[0].split(";")[0].strip() or None


TRANSLATIONS = {"en": {}, "zh-CN": ZH_CN}
I18N = gr.I18n(**TRANSLATIONS)

# Runs before Gradio's frontend: a language chosen with the switch overrides the browser's
LANGUAGE_HEAD = f"""<script>
(function () {{
  try {{
    var lang = window.localStorage.getItem("{STORAGE_KEY}");
    document.cookie = "{LANGUAGE_COOKIE}=" + encodeURIComponent(lang || navigator.language || "en") + "; path=/; SameSite=Lax";
    if (lang) {{
      Object.defineProperty(window.navigator, "language", {{get: function () {{ return lang; }}}});
      Object.defineProperty(window.navigator, "languages", {{get: function () {{ return [lang]; }}}});
    }}
  }} catch (e) {{}}
}})();
</script>"""

# The switch's click: remember the language and reload the page in it
SWITCH_JS = f"""(choice) => {{
  const lang = {{"English": "en", "简体中文": "zh-CN"}}[choice] || "en";
  const current = window.localStorage.getItem("{STORAGE_KEY}") || navigator.language;
  window.localStorage.setItem("{STORAGE_KEY}", lang);
  document.cookie = "{LANGUAGE_COOKIE}=" + lang + "; path=/; SameSite=Lax";
  if (!current.startsWith(lang.slice(0, 2))) window.location.reload();
  return choice;
}}"""

CURRENT_JS = f"""() => {{
  const lang = window.localStorage.getItem("{STORAGE_KEY}") || navigator.language || "en";
  return lang.toLowerCase().startsWith("zh") ? "简体中文" : "English";
}}"""


def tr(text: Any) -> Any:
    """Gradio i18n data for ``text`` when it has a translation, else ``text`` itself."""
    return I18N(text) if isinstance(text, str) and text in ZH_CN else text


def translate_blocks(demo: gr.Blocks) -> None:
    """Every translatable string of the built UI -> i18n data (labels, info, placeholders, buttons, choices)."""
    for block in demo.blocks.values():
        for attr in ("label", "info", "placeholder"):
            value = getattr(block, attr, None)
            if isinstance(value, str) and value in ZH_CN:
                setattr(block, attr, I18N(value))
        if isinstance(block, gr.Button) and isinstance(block.value, str) and block.value in ZH_CN:
            block.value = I18N(block.value)
        if isinstance(block, (gr.Radio, gr.Dropdown)) and getattr(block, "choices", None):
            block.choices = [(tr(label), value) for label, value in block.choices]


def language_switch() -> gr.Radio:
    """English / 简体中文; the default is the browser's language (Gradio's own rule)."""
    switch = gr.Radio(list(LANGUAGES), value="English", label="Language", show_label=False, container=False,
                      elem_id="language_switch", scale=0, min_width=220)
    switch.change(None, inputs=switch, outputs=switch, js=SWITCH_JS, api_name=False, queue=False)
    return switch


def translate_message(message: str, lang: str | None) -> str:
    """A UI message in ``lang`` (for messages built server-side): its known sentence parts translated."""
    if not lang or not lang.lower().startswith("zh"):
        return message
    for en, zh in ZH_CN.items():
        if en in message:
            message = message.replace(en, zh)
    return message
