package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// The test binary re-executes itself inside the namespaces in one of
// these roles, chosen by ELBT_ROLE.

// responder answers every TCP connection on :8080 with the host's name.
func responder() {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder:", err)
		os.Exit(1)
	}
	name := os.Getenv("ELBT_NAME")
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			c.Write([]byte(name + "\n"))
			c.Close()
		}()
	}
}

// prober starts a probe of ELBT_TARGET every ELBT_INTERVAL and prints one
// line per probe: "start-unix-nanos ok host" or "start-unix-nanos fail
// error". With ELBT_COUNT set it stops after that many probes.
func prober() {
	target := os.Getenv("ELBT_TARGET")
	interval, _ := time.ParseDuration(os.Getenv("ELBT_INTERVAL"))
	timeout, _ := time.ParseDuration(os.Getenv("ELBT_TIMEOUT"))
	count, _ := strconv.Atoi(os.Getenv("ELBT_COUNT"))
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	t := time.NewTicker(interval)
	for i := 0; count == 0 || i < count; i++ {
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			host, err := probe(target, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(out, "%d fail %v\n", start.UnixNano(), err)
			} else {
				fmt.Fprintf(out, "%d ok %s\n", start.UnixNano(), host)
			}
			out.Flush()
		}()
		if count != 0 && i == count-1 {
			break
		}
		<-t.C
	}
	wg.Wait()
}

func probe(target string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}
