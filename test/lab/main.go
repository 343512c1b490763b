// Command lab is `make lab`: a self-contained demo of edgelb on this host.
// It starts the test kube-apiserver and etcd on loopback, runs edgelb
// against them with the RBAC of packaging/rbac.yaml, applies demo Services
// and prints how to look at them. Ctrl-C stops and removes everything.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgelb/edgelb/test/testenv"
)

const demo = `apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: demo}
spec:
  type: LoadBalancer
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo}
spec:
  type: LoadBalancer
  selector: {app: dns}
  ports: [{name: dns, port: 53, protocol: UDP}]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "edgelb-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := testenv.BuildEdgelb(dir)
	if err != nil {
		return err
	}
	fmt.Println("starting etcd and kube-apiserver on loopback...")
	env, err := testenv.Start(ctx, dir)
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := filepath.Join(dir, "edgelb.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`node: {name: lab1}
cluster: {insecure: true, bindAddr: 127.0.0.1, bindPort: 17946}
kubernetes: {kubeconfig: %s, defaultClass: true}
pools:
  - {name: default, addresses: ["192.0.2.10-192.0.2.50", "2001:db8:1::/120"]}
dataplane: {backend: none}
api: {listen: "127.0.0.1:9080"}
`, env.EdgelbKubeconfig)), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "edgelb.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if out, err := env.KubectlStdin(ctx, demo, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("applying the demo Services: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := env.Kubectl(ctx, "get", "svc", "-n", "demo", "-o", "jsonpath={.items[*].status.loadBalancer.ingress[*].ip}")
		if len(strings.Fields(out)) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := env.Kubectl(ctx, "get", "svc", "-n", "demo")
	fmt.Printf(`
edgelb is running against a real kube-apiserver (%s).

%s
Try:
  kubectl --kubeconfig %s get svc -A
  kubectl --kubeconfig %s get events -n demo
  tail -f %s

Press Ctrl-C to stop and remove everything.
`, env.URL, out, env.AdminKubeconfig, env.AdminKubeconfig, logPath)
	<-ctx.Done()
	fmt.Println("\nstopping...")
	return nil
}
