// Deployed into the resource group of a workspace's default storage account.
// - Storage Blob Data Contributor: run history / artifacts live in azureml* containers whose
//   names differ per workspace, hence account scope.
// - Storage File Data Privileged Contributor: notebooks and user files live in the code-<guid>
//   Azure Files share; OAuth access to Azure Files over REST requires the "privileged" file
//   roles (there is no narrower built-in role for OAuth REST access to file data).
targetScope = 'resourceGroup'

param storageAccountName string
param principalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageFileDataPrivilegedContributor = '69566ab7-960f-475b-8e7c-b3118f30c6bd'

resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sa.id, principalId, storageBlobDataContributor)
  scope: sa
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}

resource fileContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sa.id, principalId, storageFileDataPrivilegedContributor)
  scope: sa
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageFileDataPrivilegedContributor)
  }
}
