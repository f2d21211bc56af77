"""A package put to work: installing its entries (``installation``), the globals their
bytecode reads (``bytecode_globals``), the order they are checked in (``entry_order``), and
its C++ kernel libraries (``kernel_files``)."""
