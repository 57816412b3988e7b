"""The trend study (``experiments/trend_study.py``): OSLO against its planar ERP twin with
training length, and the ablations that tell which factor makes the gap."""
