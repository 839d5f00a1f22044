// expect: _config.registryProberGroupLabels: "data-center" is not a label name
{ _config+:: { registryProberGroupLabels: ['data-center'] } }
