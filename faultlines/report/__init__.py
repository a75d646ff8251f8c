"""The HTML report: one self-contained page per run (jinja2; images inlined as PNG data URIs)."""

from faultlines.report.html import render, report

__all__ = ["render", "report"]
