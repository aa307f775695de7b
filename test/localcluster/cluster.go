package localcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// Namespace holds the ServiceAccount whose tokens clients use, and one
	// Secret per token, to which the token is bound.
	Namespace = "localcluster"
	// ServiceAccount is bound to the cluster-admin ClusterRole.
	ServiceAccount = "client"

	tokenLifetime = 24 * time.Hour
)

// Cluster is one API server of an Environment, with its Proxy, its key
// material and its tokens. Its methods are safe for concurrent use.
type Cluster struct {
	env        *Environment
	name       string
	dir        string
	pki        *pki
	adminToken string
	port       int // the API server's own port, fixed for its lifetime
	proxy      *Proxy

	probeTransport *http.Transport // readiness and revocation probes, direct
	adminHTTP      *http.Client    // shared by adminClient
	adminClient    *kubernetes.Clientset

	lifeMu sync.Mutex // serialises Start, Stop and close; protects proc and closed
	proc   *process
	closed bool

	tokenMu sync.Mutex        // protects token and tokens
	token   string            // the current token
	tokens  map[string]string // token → name of the Secret it is bound to
}

func newCluster(e *Environment, name string) (*Cluster, error) {
	c := &Cluster{
		env:        e,
		name:       name,
		dir:        filepath.Join(e.dir, name),
		adminToken: randomToken(),
		tokens:     map[string]string{},
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if c.pki, err = newPKI(name); err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.crt":      c.pki.caCert,
		"serving.crt": c.pki.servingCert,
		"serving.key": c.pki.servingKey,
		"sa.key":      c.pki.saKey,
		// The harness's own credential: a static token in group
		// system:masters, which no rotation touches.
		"tokens.csv": []byte(c.adminToken + `,localcluster-admin,localcluster-admin,"system:masters"` + "\n"),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, f), b, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caCert)
	c.probeTransport = &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "localhost"},
		ForceAttemptHTTP2: false,
	}
	return c, nil
}

// Name returns the cluster's name, such as "cluster-1". It is also its
// context, cluster and user name in the kubeconfig files.
func (c *Cluster) Name() string { return c.name }

// Server returns the URL clients use: the Proxy's, https://127.0.0.1:PORT.
func (c *Cluster) Server() string { return "https://" + c.proxy.Addr() }

// APIServerAddr returns host:port of the API server itself, behind the
// Proxy. It stays the same across Stop and Start.
func (c *Cluster) APIServerAddr() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

// CAData returns the PEM of the CA that signed the API server's certificate.
func (c *Cluster) CAData() []byte { return bytes.Clone(c.pki.caCert) }

// KubeconfigPath returns the cluster's own kubeconfig file, which holds the
// current token and the CA inline and points at the Proxy.
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.dir, "kubeconfig") }

// LogPath returns the API server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "kube-apiserver.log") }

// Config returns a new client config for the cluster: the Proxy's address,
// the CA inline and the current token (see Token).
func (c *Cluster) Config() *rest.Config { return c.ConfigForToken(c.Token()) }

// ConfigForToken returns a new client config like Config's, with token.
func (c *Cluster) ConfigForToken(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Server(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
	}
}

// AdminConfig returns a new config with the harness's own credential, a
// static token in group system:masters that no rotation touches. It reaches
// the API server directly, so Proxy faults do not affect it. It sets a
// ServerName, which gives it a connection pool of its own in client-go,
// apart from the clients under test.
func (c *Cluster) AdminConfig() *rest.Config {
	return &rest.Config{
		Host:        "https://" + c.APIServerAddr(),
		BearerToken: c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     c.CAData(),
			ServerName: "localhost",
		},
		QPS:   1000,
		Burst: 1000,
	}
}

// Token returns the current token: the one in Config and the kubeconfig
// files. It is valid until revoked.
func (c *Cluster) Token() string {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	return c.token
}

// BlackHole makes the cluster silent to every client that goes through its
// Proxy (see Proxy.BlackHole). The API server keeps running.
func (c *Cluster) BlackHole() { c.proxy.BlackHole() }

// SetDelay slows the path to the cluster (see Proxy.SetDelay).
func (c *Cluster) SetDelay(d time.Duration) { c.proxy.SetDelay(d) }

// Refuse makes the cluster refuse new connections, as a host with nothing
// on the port would (see Proxy.Refuse). The API server keeps running.
func (c *Cluster) Refuse() error { return c.proxy.Refuse() }

// Heal ends BlackHole, SetDelay and Refuse.
func (c *Cluster) Heal() error { return c.proxy.Heal() }

// Running reports whether the API server process runs.
func (c *Cluster) Running() bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	return c.proc != nil && !c.proc.exited()
}

// Stop kills the API server (SIGKILL, as a crash would) and waits until it
// has exited. Until Start, new connections are refused, at the Proxy's port
// as at the server's own, and open ones are closed. The data stays in etcd.
// Stopping a stopped cluster does nothing.
func (c *Cluster) Stop() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	err := c.proxy.SetBackendDown(true)
	if c.proc != nil {
		c.proc.kill()
	}
	return err
}

// Start starts the API server again on the same port over the same data and
// blocks until it is ready (a few seconds), or ctx ends. Tokens issued before
// Stop are still valid. Starting a running cluster does nothing.
func (c *Cluster) Start(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closed {
		return errors.New("localcluster: cluster " + c.name + ": environment stopped")
	}
	if c.proc != nil && !c.proc.exited() {
		return nil
	}
	if err := c.startLocked(ctx); err != nil {
		return err
	}
	return c.proxy.SetBackendDown(false)
}

// firstStart picks the API server's port, starts it, starts the Proxy, and
// creates the ServiceAccount and its first token.
func (c *Cluster) firstStart(ctx context.Context) error {
	begin := time.Now()
	c.lifeMu.Lock()
	var err error
	// A port found free can be taken by another program before the server
	// binds it: then the server exits at once, and gets another port.
	for range 3 {
		if c.port, err = freePort(); err != nil {
			break
		}
		err = c.startLocked(ctx)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	c.lifeMu.Unlock()
	if err != nil {
		return err
	}
	if c.proxy, err = NewProxy(c.APIServerAddr()); err != nil {
		return err
	}
	cfg := c.AdminConfig()
	if c.adminHTTP, err = rest.HTTPClientFor(cfg); err != nil {
		return err
	}
	if c.adminClient, err = kubernetes.NewForConfigAndClient(cfg, c.adminHTTP); err != nil {
		return err
	}
	if err := c.bootstrap(ctx); err != nil {
		return fmt.Errorf("cluster %s: %w", c.name, err)
	}
	tok, err := c.IssueToken(ctx)
	if err != nil {
		return err
	}
	c.tokenMu.Lock()
	c.token = tok
	c.tokenMu.Unlock()
	fmt.Fprintf(c.env.progress, "localcluster: %s ready at %s (API server %s) in %s\n",
		c.name, c.Server(), c.APIServerAddr(), time.Since(begin).Round(time.Millisecond))
	return nil
}

func (c *Cluster) startLocked(ctx context.Context) error {
	args := []string{
		"--etcd-servers=" + c.env.etcdURL,
		"--etcd-prefix=/localcluster/" + c.name,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.port),
		// No controller manager runs, so nothing would keep the
		// "kubernetes" Endpoints up to date.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(c.dir, "certs"),
		"--tls-cert-file=" + filepath.Join(c.dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(c.dir, "serving.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(c.dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(c.dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// Its controller is not running: pods would wait for a token
		// Secret that never comes.
		"--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.96.0.0/24",
		"--profiling=false",
	}
	p, err := startProcess(c.name+" kube-apiserver", c.env.bins.KubeAPIServer, args, c.LogPath())
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, p); err != nil {
		p.kill()
		return fmt.Errorf("cluster %s: %w", c.name, err)
	}
	c.proc = p
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, p *process) error {
	hc := &http.Client{Transport: c.probeTransport, Timeout: 5 * time.Second}
	return poll(ctx, p, c.env.readyTimeout, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.APIServerAddr()+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d: %s", resp.StatusCode, tail(string(body), 5))
		}
		return nil
	})
}

// bootstrap creates the namespace, the ServiceAccount and its binding to
// cluster-admin. The RBAC roles appear during the server's start, so a
// missing one is waited for.
func (c *Cluster) bootstrap(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount, Namespace: Namespace}}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "localcluster-client-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ServiceAccount, Namespace: Namespace}},
	}
	steps := []func(ctx context.Context) error{
		func(ctx context.Context) error {
			_, err := c.adminClient.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context) error {
			_, err := c.adminClient.CoreV1().ServiceAccounts(Namespace).Create(ctx, sa, metav1.CreateOptions{})
			return err
		},
		func(ctx context.Context) error {
			_, err := c.adminClient.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
			return err
		},
	}
	for _, step := range steps {
		if err := retry(ctx, 30*time.Second, func(ctx context.Context) error {
			err := step(ctx)
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// retry calls f every 100ms until it succeeds or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// IssueToken returns a new token for the cluster's ServiceAccount, valid for
// 24 hours or until RevokeToken. The current token (Token) stays as it is;
// UseToken makes the new one current. It blocks for two requests to the API
// server, which must be running (Proxy faults do not matter).
func (c *Cluster) IssueToken(ctx context.Context) (string, error) {
	// Each token is bound to a Secret of its own: the API server rejects a
	// bound token once its object is gone, so one token can be revoked while
	// the others stay valid.
	sec, err := c.adminClient.CoreV1().Secrets(Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "token-", Namespace: Namespace},
		Type:       corev1.SecretTypeOpaque,
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cluster %s: issue token: %w", c.name, err)
	}
	expiry := int64(tokenLifetime / time.Second)
	tr, err := c.adminClient.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: sec.Name, UID: sec.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cluster %s: issue token: %w", c.name, err)
	}
	c.tokenMu.Lock()
	c.tokens[tr.Status.Token] = sec.Name
	c.tokenMu.Unlock()
	return tr.Status.Token, nil
}

// UseToken makes token, which IssueToken returned, the current one: Config
// and the kubeconfig files carry it from now on. It does not revoke the
// previous one.
func (c *Cluster) UseToken(token string) error {
	c.tokenMu.Lock()
	if _, ok := c.tokens[token]; !ok {
		c.tokenMu.Unlock()
		return fmt.Errorf("localcluster: cluster %s: unknown token", c.name)
	}
	c.token = token
	c.tokenMu.Unlock()
	return c.env.writeKubeconfigs()
}

// RevokeToken makes token fail with 401 Unauthorized, without a restart,
// and blocks until the API server rejects it. That takes up to about 10
// seconds: kube-apiserver caches successful token authentications for 10s,
// a fixed setting. Other tokens stay valid. The API server must be running.
func (c *Cluster) RevokeToken(ctx context.Context, token string) error {
	c.tokenMu.Lock()
	secret, ok := c.tokens[token]
	c.tokenMu.Unlock()
	if !ok {
		return fmt.Errorf("localcluster: cluster %s: unknown token", c.name)
	}
	err := c.adminClient.CoreV1().Secrets(Namespace).Delete(ctx, secret, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cluster %s: revoke token: %w", c.name, err)
	}
	// Ask as the token's holder who it is until the answer is 401.
	hc := &http.Client{Transport: c.probeTransport, Timeout: 5 * time.Second}
	err = retry(ctx, time.Minute, func(ctx context.Context) error {
		body := strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			"https://"+c.APIServerAddr()+"/apis/authentication.k8s.io/v1/selfsubjectreviews", body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("revoked token still accepted: %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster %s: revoke token: %w", c.name, err)
	}
	c.tokenMu.Lock()
	delete(c.tokens, token)
	c.tokenMu.Unlock()
	return nil
}

// RotateToken issues a new token, makes it current (UseToken), then revokes
// the previous current token (RevokeToken, which blocks up to ~10s), and
// returns the new token.
func (c *Cluster) RotateToken(ctx context.Context) (string, error) {
	old := c.Token()
	tok, err := c.IssueToken(ctx)
	if err != nil {
		return "", err
	}
	if err := c.UseToken(tok); err != nil {
		return "", err
	}
	if err := c.RevokeToken(ctx, old); err != nil {
		return "", err
	}
	return tok, nil
}

func (c *Cluster) addToKubeconfig(cfg *clientcmdapi.Config) {
	cl := clientcmdapi.NewCluster()
	cl.Server = c.Server()
	cl.CertificateAuthorityData = c.CAData()
	cfg.Clusters[c.name] = cl
	user := clientcmdapi.NewAuthInfo()
	user.Token = c.Token()
	cfg.AuthInfos[c.name] = user
	ctx := clientcmdapi.NewContext()
	ctx.Cluster, ctx.AuthInfo = c.name, c.name
	cfg.Contexts[c.name] = ctx
}

// close stops the API server and the Proxy for good.
func (c *Cluster) close() {
	c.lifeMu.Lock()
	c.closed = true
	if c.proc != nil {
		c.proc.kill()
	}
	c.lifeMu.Unlock()
	if c.proxy != nil {
		_ = c.proxy.Close()
	}
	c.probeTransport.CloseIdleConnections()
	if c.adminHTTP != nil {
		utilnet.CloseIdleConnectionsFor(c.adminHTTP.Transport)
	}
}
