package inventory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/shard"
	"github.com/clusterregistry/clusterregistry/source/clusterprofile"
	"github.com/clusterregistry/clusterregistry/source/compose"
	"github.com/clusterregistry/clusterregistry/source/secret"
	"github.com/clusterregistry/clusterregistry/test/localcluster"
)

// Both sources merged and shared by two replicas with package shard, their
// Leases in the same hub: every cluster of either source (names with a ':'
// from both) is served by exactly the replica that the common view gives
// it, and answers as its member; when one replica stops, the other serves
// them all.
func TestBothSourcesUnderTheShardFilter(t *testing.T) {
	e := sharedEnv(t)
	hub, c2, c3 := e.Cluster("cluster-1"), e.Cluster("cluster-2"), e.Cluster("cluster-3")
	markMembers(t, c2, c3)
	hubAdmin := adminClient(t, hub)
	hubDyn := adminDynamic(t, hub)
	installCRD(t, hubDyn, "testdata/clusterprofiles.yaml", clusterprofile.GroupVersionResource)
	const capiNS, profilesNS, leaseNS = "shard-capi", "shard-profiles", "shard-leases"
	for _, ns := range []string{capiNS, profilesNS, leaseNS} {
		createNamespace(t, hubAdmin, ns, nil)
	}
	_, providers := operatorProviders(t, c2, c3)
	profiles := hubDyn.Resource(clusterprofile.GroupVersionResource).Namespace(profilesNS)

	// Eight clusters in each source, alternating between the members.
	members := []*localcluster.Cluster{c2, c3}
	memberOf := map[string]*localcluster.Cluster{}
	for i := range 8 {
		m := members[i%2]
		capi := fmt.Sprintf("workload-%d", i)
		_, err := hubAdmin.CoreV1().Secrets(capiNS).Create(t.Context(),
			capiSecret(capiNS, capi, "kubeconfig", capiKubeconfig(t, capi, m, m.Token())), metav1.CreateOptions{})
		require.NoError(t, err)
		memberOf[secret.ClusterAPIName(capiNS, capi)] = m
		prof := fmt.Sprintf("profile-%d", i)
		putProfile(t, profiles, prof, profileStatus(m, "e2e-token", "True"))
		memberOf[clusterprofile.ClusterName(profilesNS, prof)] = m
	}
	all := slices.Sorted(maps.Keys(memberOf))

	ignoreBefore := goleak.IgnoreCurrent()
	hubConfig := hub.Config()
	hubHTTP, err := rest.HTTPClientFor(hubConfig)
	require.NoError(t, err)
	hubClient, err := kubernetes.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)
	hubDynamic, err := dynamic.NewForConfigAndClient(hubConfig, hubHTTP)
	require.NoError(t, err)

	type replica struct {
		m    *shard.Member
		reg  *clusterregistry.Registry[*clusterregistry.Client]
		stop func()
	}
	start := func(id string) replica {
		capi, err := secret.New(hubClient, secret.WithFormat(secret.ClusterAPI), secret.WithNamespace(capiNS))
		require.NoError(t, err)
		prof, err := clusterprofile.New(hubDynamic, providers, clusterprofile.WithNamespace(profilesNS))
		require.NoError(t, err)
		m, err := shard.New(shard.Config{
			Client: hubClient.CoordinationV1(), Namespace: leaseNS, Group: "inventory", Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = m.Run(ctx) })
		reg, stopSyncer := runSyncer(t, m.Source(compose.Merge(capi, prof)), shard.Wrap[*clusterregistry.Client](m, fast),
			clusterregistry.WithDrainTimeout(200*time.Millisecond))
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); stopSyncer(); wg.Wait() }) }
		t.Cleanup(stop)
		return replica{m, reg, stop}
	}
	a, b := start("replica-a"), start("replica-b")

	// servesItsShare reports whether r serves exactly the clusters that its
	// view gives it, the view holding want's replicas.
	servesItsShare := func(r replica, want string) bool {
		st := r.m.Status()
		if st.View.String() != want {
			return false
		}
		var mine []string
		for _, n := range all {
			if st.View.Owner(n) == r.m.Identity() {
				mine = append(mine, n)
			}
		}
		return slices.Equal(r.reg.Snapshot().Names(), mine)
	}
	require.Eventually(t, func() bool {
		return servesItsShare(a, "[replica-a replica-b]") && servesItsShare(b, "[replica-a replica-b]")
	}, time.Minute, 20*time.Millisecond, "a serves %v, b %v", a.reg.Snapshot().Names(), b.reg.Snapshot().Names())
	assert.Equal(t, all, slices.Sorted(slices.Values(append(a.reg.Snapshot().Names(), b.reg.Snapshot().Names()...))),
		"together the replicas serve every cluster of both sources, each once")
	assert.NotEmpty(t, a.reg.Snapshot().Names())
	assert.NotEmpty(t, b.reg.Snapshot().Names())
	for _, r := range []replica{a, b} {
		for _, name := range r.reg.Snapshot().Names() {
			client, err := r.reg.Get(name)
			require.NoError(t, err, name)
			got, err := namespacesOf(t.Context(), client)
			require.NoError(t, err, name)
			assert.Equal(t, []string{"only-on-" + memberOf[name].Name()}, got, "%s answers as its member", name)
		}
	}

	// b stops: it releases its clusters and deletes its Lease, and a
	// serves them all.
	b.stop()
	_, err = hubClient.CoordinationV1().Leases(leaseNS).Get(t.Context(), "inventory-replica-b", metav1.GetOptions{})
	assert.Error(t, err, "a replica that stopped deletes its Lease")
	require.Eventually(t, func() bool { return servesItsShare(a, "[replica-a]") }, 30*time.Second, 20*time.Millisecond,
		"a serves %v", a.reg.Snapshot().Names())
	a.stop()
	verifyNoLeak(t, hubHTTP.Transport, ignoreBefore)
}
