"""One module per report section: typed content built from the loaded inputs, no rendering
(the Jinja2 templates lay it out); studies.py composes the ablations (studies/) and the
main-run controls (controls/)."""
