# Included by the Makefile: luacheck with .luacheckrc over every Lua file of
# the repository (the command line, tools, examples, benchmarks, specs and
# the modules). LINT_PATHS narrows it (make lint LINT_PATHS=spec).
LINT_PATHS ?= lua spec bin/moltflow-admin tools examples bench
lint:
	luacheck --codes $(LINT_PATHS)
