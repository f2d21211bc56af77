"""The compiling process: the recorder Dynamo drives (``recorder``, ``pending_entry``,
``recorder_hook``), what may be stored (``storable``), the optimizer's first step
(``first_step``), and writing a package (``saving``)."""
