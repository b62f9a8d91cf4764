"""The study side: votes of several raters per image, rater screening, MOS with intervals.

Plain numpy on a table of votes (no Label Studio): ``votes`` holds one rating per rater and image,
``screening`` the named methods that decide which raters count and what each image's MOS and
interval are, ``subject_model`` the maximum-likelihood subject model, ``raters`` the per-rater
report.
"""
