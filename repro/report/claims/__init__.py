"""The published claims: the registry (claims.yaml), the evidence each rule reads, the measures
that pick a claim's values, and each claim judged by :mod:`repro.report.verdicts`.
"""
