package webtest

import (
	"github.com/edgelb/edgelb/api/clustercfg"
	"github.com/edgelb/edgelb/cluster"
	"github.com/edgelb/edgelb/lb/config"
)

// ClusterConfig is a one-member cluster configuration in memory (member
// lb1), seeded from the cluster-wide keys of the config file hostFile and
// validated over its host-local keys, as a member's is.
func ClusterConfig(hostFile string) (*clustercfg.Config, *cluster.Docs, error) {
	host := config.NewHost("config.yaml", []byte(hostFile), ".")
	docs, err := cluster.NewDocs(cluster.DocOptions{Name: "lb1", Validate: func(b []byte) error { _, err := host.Apply(b); return err }})
	if err != nil {
		return nil, nil, err
	}
	spec, err := config.SpecFromFile("config.yaml", []byte(hostFile))
	if err != nil {
		return nil, nil, err
	}
	if _, err := docs.Seed(spec, "file"); err != nil {
		return nil, nil, err
	}
	return &clustercfg.Config{Versions: cluster.LocalDocs{Docs: docs}, Host: host}, docs, nil
}
