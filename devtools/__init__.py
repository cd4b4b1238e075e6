"""Development tools, not part of the installed product: the architecture check, throwaway Redis/PostgreSQL
servers for the tests, a fault-injecting proxy, and a real Label Studio in its own virtualenv."""
