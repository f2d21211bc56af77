"""A package as data (``model``), its msgpack manifest (``manifest``), the key it is stored
under and the sources it depends on (``keys``), and the backend artifacts it carries
(``artifacts``)."""
