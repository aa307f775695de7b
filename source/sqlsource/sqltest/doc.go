// Package sqltest tests package sqlsource against a real SQLite database,
// with the pure-Go driver modernc.org/sqlite. It is a module of its own so
// that the clusterregistry module does not depend on a driver. It holds
// tests only.
package sqltest
