package sqlsource_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
)

// Reading kite's table, whose columns have other names; the program imports
// the driver for "sqlite", "mysql" or "pgx".
func Example_kite() {
	db, err := sql.Open("sqlite", "kite.db")
	if err != nil {
		log.Fatal(err)
	}
	src, err := sqlsource.New(db, sqlsource.WithQuery(
		`SELECT name, config AS kubeconfig, is_default, enable AS enabled FROM clusters WHERE in_cluster = ?`, false))
	if err != nil {
		log.Fatal(err)
	}
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{},
		clusterregistry.WithInterval(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = syncer.Run(context.TODO()) }()
}

// Watching the table: the Syncer lists it within about a second of a change
// to the count or the latest updated_at, and every 10 minutes regardless.
func Example_changeQuery() {
	db, err := sql.Open("sqlite", "clusters.db")
	if err != nil {
		log.Fatal(err)
	}
	src, err := sqlsource.New(db,
		sqlsource.WithChangeQuery(`SELECT count(*), max(updated_at) FROM clusters`),
		sqlsource.WithPollInterval(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	syncer, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{},
		clusterregistry.WithInterval(10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = syncer.Run(context.TODO()) }() // also runs src.Watch
}
