"""The report's figures of the main and GFE runs (matplotlib and seaborn); labels come from
:mod:`repro.report.labels`.
"""
