"""Finding one process's objects in another: names and code fingerprints (``names``), the
guard-source paths an identity check may walk (``guard_path``), the checks that replace
Dynamo's identity guards (``checks``), and transformed bytecode's references (``bytecode``)."""
