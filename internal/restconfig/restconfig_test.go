package restconfig_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clusterregistry/clusterregistry/internal/restconfig"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func full() *rest.Config {
	return &rest.Config{
		Host:          "https://c.example",
		ContentConfig: rest.ContentConfig{GroupVersion: &schema.GroupVersion{Group: "apps", Version: "v1"}},
		BearerToken:   "tok-s3cr3t",
		Impersonate:   rest.ImpersonationConfig{UserName: "jane", Groups: []string{"g"}, Extra: map[string][]string{"k": {"v"}}},
		AuthProvider:  &clientcmdapi.AuthProviderConfig{Name: "oidc", Config: map[string]string{"client-id": "id"}},
		ExecProvider: &clientcmdapi.ExecConfig{
			Command: "get-token", Args: []string{"--a"}, APIVersion: "client.authentication.k8s.io/v1",
			Config: &runtime.Unknown{Raw: []byte(`{"audience":"x"}`)},
		},
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key"), NextProtos: []string{"h2"}},
	}
}

func TestCopySharesNothing(t *testing.T) {
	orig := full()
	c := restconfig.Copy(orig)
	assert.Equal(t, orig, c)

	c.GroupVersion.Version = "changed"
	c.Impersonate.Groups[0] = "changed"
	c.Impersonate.Extra["k"][0] = "changed"
	c.AuthProvider.Config["client-id"] = "changed"
	c.ExecProvider.Args[0] = "changed"
	c.ExecProvider.Config.(*runtime.Unknown).Raw[0] = 'X'
	c.TLSClientConfig.CAData[0] = 'X'
	c.TLSClientConfig.CertData[0] = 'X'
	c.TLSClientConfig.KeyData[0] = 'X'
	c.TLSClientConfig.NextProtos[0] = "changed"
	assert.Equal(t, full(), orig, "the original is as it was")
	assert.Nil(t, restconfig.Copy(nil))
}

// TestCopyWhileOthersCopy must pass under -race: rest.CopyConfig writes
// into the ExecProvider that the original and its copies share.
func TestCopyWhileOthersCopy(t *testing.T) {
	orig := full()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c := restconfig.Copy(orig)
				_ = c.ExecProvider.Config
			}
		})
	}
	wg.Wait()
	assert.Equal(t, full(), orig)
}
