// Command tokenplugin is a client-go exec credential plugin for tests: it
// prints an ExecCredential whose token it reads from a file, so that a test
// rotates the credential by rewriting the file.
//
// The file is DIR/NAME.token, where DIR is given by -dir and NAME by the
// cluster's config (the cluster extension client.authentication.k8s.io/exec,
// {"cluster": NAME}), which client-go hands over in KUBERNETES_EXEC_INFO when
// the exec config sets provideClusterInfo. Each run appends a line to
// DIR/NAME.log: the first 8 hex digits of the token's SHA-256, never the
// token. With -ttl the credential expires after that long, so client-go runs
// the plugin again.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

type execInfo struct {
	APIVersion string `json:"apiVersion"`
	Spec       struct {
		Cluster *struct {
			Server string `json:"server"`
			Config struct {
				Cluster string `json:"cluster"`
			} `json:"config"`
		} `json:"cluster"`
	} `json:"spec"`
}

var validName = regexp.MustCompile(`^[a-z0-9-]+$`)

func main() {
	dir := flag.String("dir", "", "directory of the token files")
	ttl := flag.Duration("ttl", 0, "lifetime of the credential; 0: none")
	flag.Parse()
	if err := run(*dir, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "tokenplugin:", err)
		os.Exit(1)
	}
}

func run(dir string, ttl time.Duration) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	var info execInfo
	if err := json.Unmarshal([]byte(os.Getenv("KUBERNETES_EXEC_INFO")), &info); err != nil {
		return fmt.Errorf("KUBERNETES_EXEC_INFO: %w", err)
	}
	if info.Spec.Cluster == nil {
		return errors.New("no cluster info: set provideClusterInfo")
	}
	name := info.Spec.Cluster.Config.Cluster
	if !validName.MatchString(name) {
		return fmt.Errorf("cluster config: want {\"cluster\": NAME}, NAME of [a-z0-9-], got %q", name)
	}
	raw, err := os.ReadFile(filepath.Join(dir, name+".token"))
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(raw))
	sum := sha256.Sum256([]byte(token))
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(log, hex.EncodeToString(sum[:4]))
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	status := map[string]any{"token": token}
	if ttl > 0 {
		status["expirationTimestamp"] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	apiVersion := info.APIVersion
	if apiVersion == "" {
		apiVersion = "client.authentication.k8s.io/v1"
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"apiVersion": apiVersion, "kind": "ExecCredential", "status": status,
	})
}
