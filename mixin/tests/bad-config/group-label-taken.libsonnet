// expect: _config.registryProberGroupLabels: "target" is grouped on already
{ _config+:: { registryProberGroupLabels: ['cluster', 'target'] } }
