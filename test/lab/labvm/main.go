// Command labvm is the part of `make lab` that runs inside the test VM: it
// builds the network of test/labnet (a bridge, three appliance namespaces
// lb1..lb3 and three cluster nodes node1..node3 with their servers), runs
// `edgelb run` in each appliance namespace with the config test/lab wrote
// for it (/job/lbN.yaml), and forwards the ports QEMU brings in from the
// host to the dashboard and the VIPs. It runs until the VM is stopped.
//
//	labvm up LISTEN=TARGET...   (in the VM's own namespace)
//	labvm serve NAME            (in a node's namespace: labnet.Serve)
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/edgelb/edgelb/test/labnet"
)

const edgelbBin = "/job/edgelb"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: labvm up LISTEN=TARGET... | labvm serve NAME")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "serve":
		err = labnet.Serve(ctx, os.Args[2], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labvm:", err)
		os.Exit(1)
	}
}

// out serialises the lines of the programs labvm runs onto the console.
var out = struct {
	sync.Mutex
	io.Writer
}{Writer: os.Stdout}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.Writer, "labvm: "+format+"\n", args...)
}

// prefix copies r's lines to the console, each prefixed by name, and all
// of them to the file log. memberlist's own lines stay out of the console:
// an emulated serial port costs CPU the emulated hosts need.
func prefix(name string, r io.Reader, log io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		if strings.Contains(sc.Text(), "lib=memberlist") {
			continue
		}
		out.Lock()
		fmt.Fprintf(out.Writer, "%s| %s\n", name, sc.Text())
		out.Unlock()
	}
}

func up(ctx context.Context, forwards []string) error {
	if b, err := exec.Command("bash", "-ec", labnet.Topology+labnet.Uplink).CombinedOutput(); err != nil {
		return fmt.Errorf("building the network: %v\n%s", err, b)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
	}()
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("node%d", i)
		cmd := exec.Command("ip", "netns", "exec", node, self, "serve", node)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "serving") {
			return fmt.Errorf("the servers of %s did not start: %q %v", node, line, err)
		}
	}
	say("cluster nodes node1..node3 (10.0.0.21-23) serve NodePorts 30080, 30081 and 30053/udp")
	for i := 1; i <= 3; i++ {
		lb, cfg := fmt.Sprintf("lb%d", i), fmt.Sprintf("/job/lb%d.yaml", i)
		if b, err := exec.Command(edgelbBin, "check", "--config", cfg).CombinedOutput(); err != nil {
			return fmt.Errorf("edgelb check --config %s: %v\n%s", cfg, err, b)
		}
		cmd := exec.Command("ip", "netns", "exec", lb, edgelbBin, "run", "--config", cfg)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		logf, err := os.Create("/tmp/" + lb + ".log")
		if err != nil {
			return err
		}
		defer logf.Close()
		go prefix(lb, pr, logf)
	}
	say("edgelb runs in lb1..lb3 (10.0.0.11-13), full logs in the VM's /tmp/lbN.log")
	errc := make(chan error, len(forwards))
	for _, f := range forwards {
		listen, target, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("forward %q: want LISTEN=TARGET", f)
		}
		go func() { errc <- labnet.Forward(ctx, listen, target) }()
		say("forwarding %s to %s", listen, target)
	}
	say("ready")
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}
