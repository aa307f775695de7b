package sqlsource_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/source/internal/credcheck"
	"github.com/clusterregistry/clusterregistry/source/sqlsource"
	"github.com/clusterregistry/clusterregistry/trust"
)

// FuzzRow checks a row as a Source with its defaults (trust.Untrusted)
// reads it: no name or kubeconfig makes it panic; the row is either usable,
// with nothing the policy refuses in its config and a valid name, or has an
// error at "row 1" that names a field; and no error quotes a credential.
func FuzzRow(f *testing.F) {
	f.Add("prod", []byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", insecure-skip-tls-verify: true}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: tok-s3cr3tvalue}}]
`))
	f.Add("prod", []byte(`
current-context: x
clusters: [{name: c, cluster: {server: "https://c.example", certificate-authority: /etc/ssl/ca.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {command: /bin/sh, args: [-c, "touch /tmp/pwned"], apiVersion: client.authentication.k8s.io/v1, env: [{name: K, value: env-s3cr3tvalue}]}, tokenFile: /var/run/token}}]
`))
	f.Add("my cluster/1", []byte(`users: [{name: u, user: {token: !!int tok-s3cr3tvalue}}]`))
	f.Add("", []byte(""))
	s, err := sqlsource.New(&sql.DB{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string, kubeconfig []byte) {
		c := sqlsource.Row(s, name, kubeconfig)
		secrets, public := credcheck.Kubeconfig(kubeconfig)
		credcheck.Cluster(t, c, &trust.Untrusted, public+"\x00"+name, secrets...)
		var fe *clusterregistry.FieldError
		if c.Err != nil && (!errors.As(c.Err, &fe) || fe.Location != "row 1" || fe.Field == "") {
			t.Fatalf("row %q: error %v is not a FieldError at the row naming a field", name, c.Err)
		}
	})
}
