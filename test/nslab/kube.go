package nslab

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgelb/edgelb/test/prereq"
	"github.com/edgelb/edgelb/test/testenv"
)

// StartKube starts the test API server on the lab's uplink, creates
// namespace, and configures every host (none started yet) as the whole
// configured cluster, running against it with loadBalancerClass class,
// the Lease kube-system/lease, a pool of the lab's subnet and no static
// services. It skips the test when the API server's binaries are missing.
func (l *Lab) StartKube(namespace, class, lease string) *testenv.Env {
	t := l.T
	t.Helper()
	if _, err := testenv.BinDir(); err != nil {
		prereq.Missing(t, "needs the test API server: %v", err)
	}
	addr := l.Uplink()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := testenv.StartWith(ctx, t.TempDir(), testenv.Options{Address: addr.String()})
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(env.Stop)
	if _, err := env.Admin.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.Join = len(l.Hosts)
	l.Services = ""
	l.Extra = fmt.Sprintf(`kubernetes: {kubeconfig: %s, loadBalancerClass: %s, leaseName: %s, leaseNamespace: kube-system}
pools:
  - {name: %s, addresses: ["10.99.0.128-10.99.0.250"]}
`, env.EdgelbKubeconfig, class, lease, namespace)
	return env
}
