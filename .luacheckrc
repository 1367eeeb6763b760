-- luacheck (Debian's lua-check) over the Lua of the project: `make lint`.
std = "luajit"
max_line_length = 120
codes = true
files["spec/"] = { std = "+busted" }
files["bin/"] = { std = "luajit" }
exclude_files = { "build/", "dist/", "spec/fixtures/*.lua" }
-- `not (x > y)` is how the code says "fails for NaN too": keep it
ignore = { "581", "212/self" }
