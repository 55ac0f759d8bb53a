"""``subpixel bench``: speed, memory, complexity and quality of our models beside peer programs.

:func:`~subpixel.bench.runner.run_bench` measures, :func:`~subpixel.bench.report.write_reports`
writes JSON, markdown and a quality-vs-time plot; ``benchmarks/README.md`` says what is measured.
"""
